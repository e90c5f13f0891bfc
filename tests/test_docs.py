"The docs site renders from the notebooks without Quarto: every notebook has its page and internal links resolve."
import os, shutil, subprocess, sys, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT/"Makefile").read_text()
PROC_NBS = re.search(r"define PROC_NBS\n(.*?)\nendef", MAKEFILE, re.S).group(1)

def test_site_renders_every_notebook_with_working_links(tmp_path):
    "The same steps as `make docs`, in a copy of the project so the checkout is left alone."
    modidx_before = (ROOT/"reranker_tune"/"_modidx.py").read_text()
    shutil.copytree(ROOT/"nbs", tmp_path/"nbs", ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
    # the package is copied too: building the docs rewrites its _modidx.py, which must not touch the checkout
    shutil.copytree(ROOT/"reranker_tune", tmp_path/"reranker_tune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT/"settings.ini", tmp_path/"settings.ini")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    done = subprocess.run([sys.executable, "-c", PROC_NBS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.rmtree(tmp_path/"_proc"/"runs", ignore_errors=True)
    smalldocs = Path(sys.executable).parent/"smalldocs"
    done = subprocess.run([str(smalldocs), "render", "."], cwd=tmp_path/"_proc", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    broken = [l for l in done.stderr.splitlines() if "broken link" in l]
    assert not broken, broken
    site = tmp_path/"_proc"/"_docs"
    for notebook in (ROOT/"nbs").glob("*.ipynb"):
        assert (site/f"{notebook.stem}.html").exists(), f"no page for {notebook.name}"
    index = (site/"index.html").read_text()
    assert "Quick start" in index and "make demo" in index
    assert (ROOT/"reranker_tune"/"_modidx.py").read_text() == modidx_before, "building the docs changed the checkout"
