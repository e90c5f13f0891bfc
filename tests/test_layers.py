"The package's layers: which module may import which, read from the source, and what an import loads at run time."
import ast, subprocess, sys
from pathlib import Path
import reranker_tune

PACKAGE = Path(reranker_tune.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "_modidx"))

def package_imports(path: Path) -> set[str]:
    "The package's modules that a module imports, at its top or inside a function."
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reranker_tune"):
            names |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("reranker_tune.")}
    return names & set(MODULES)

GRAPH = {m: package_imports(PACKAGE/f"{m}.py") for m in MODULES}

def reachable(module: str) -> set[str]:
    "Every module that importing `module` can load, through any chain of imports."
    seen, todo = set(), [module]
    while todo:
        for m in GRAPH[todo.pop()] - seen: seen.add(m); todo.append(m)
    return seen

def test_the_imports_read_from_the_source():
    "Imports at the top and inside functions (cli loads serving, server and advanced_training only when used)."
    assert GRAPH["core"] == set() and GRAPH["data"] == {"core"}
    assert GRAPH["cli"] == {"core", "config", "batch", "serving", "server", "advanced_training"}

def test_the_layers_have_no_cycle_and_nothing_imports_the_command_line():
    assert [m for m in MODULES if m in reachable(m)] == [], "a cycle between modules"
    assert [m for m in MODULES if "cli" in GRAPH[m]] == [], "cli is the top layer"
    assert not {"pipeline", "batch", "cli"} & reachable("serving"), "serving sits below the pipeline"
    assert not {"pipeline", "batch", "cli", "serving"} & reachable("run_folder")

def test_imports_at_run_time_without_the_onnx_extra():
    "serving imports without onnx and says how to add it; neither it nor cli loads the pipeline or the server."
    code = ("import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
            "import reranker_tune.serving as s\n"
            "print(sorted({'reranker_tune.pipeline', 'reranker_tune.batch'} & set(sys.modules)))\n"
            "try: s.require_onnx()\nexcept s.OnnxNotInstalled as e: print('refused:', e)\n"
            "import reranker_tune.cli\n"
            "print(sorted({'fastapi', 'uvicorn', 'reranker_tune.server'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "[]" and lines[-1] == "[]", done.stdout
    assert lines[1].startswith("refused:") and "reranker_tune[onnx]" in lines[1], done.stdout
