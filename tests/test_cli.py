"The `reranker-tune` command line: its one parser, `run --config`, rerank from the shell, train, --version; nothing imports it."
import configparser, io, json, os, subprocess, sys
from pathlib import Path
import pytest, yaml
from reranker_tune import batch
from reranker_tune.cli import main

ROOT = Path(__file__).resolve().parents[1]

def test_console_script_points_at_the_cli_command():
    config = configparser.ConfigParser(delimiters=["="]); config.read(ROOT/"settings.ini")
    assert config["DEFAULT"]["console_scripts"].strip() == "reranker-tune=reranker_tune.cli:main"

def test_run_config_reproduces_a_run(tmp_path, tiny_bert, tiny_embedder, monkeypatch):
    "`reranker-tune run --config runs/x/config.yaml` executes the same parameters into the same folder."
    from reranker_tune.pipeline import JobConfig
    record = {**JobConfig(run_dir=str(tmp_path/"runs"/"x"), embedder=tiny_embedder, base_model=tiny_bert, epochs=1,
                          top_k=5).as_record(), "resolved": {"device": "cpu"}}
    (tmp_path/"config.yaml").write_text(yaml.safe_dump(record))
    seen = {}
    monkeypatch.setattr(batch, "execute_run", lambda name, params, runs_dir, *a, **k: seen.update(name=name, params=params, runs_dir=runs_dir) or "finished")
    assert main(["run", "--config", str(tmp_path/"config.yaml"), "--param", "seed=3"]) == 0
    assert seen["name"] == "x" and Path(seen["runs_dir"]) == tmp_path/"runs"
    assert seen["params"] == {**{k: v for k, v in record.items() if k not in ("run_dir", "resolved")}, "seed": 3}

def test_batch_has_no_command_line():
    assert not hasattr(batch, "main") and not hasattr(batch, "argparse")

# ---- rerank from the shell ----

@pytest.fixture(scope="module")
def model_folder(tiny_bert, tmp_path_factory) -> Path:
    from reranker_tune import training
    model = training.load_reranker(tiny_bert, device="cpu")
    return training.save_model(model, tmp_path_factory.mktemp("served")/"model")

QUERY = "how deep should a raised bed be?"
DOCUMENTS = ["Six to twelve inches of soil suits most vegetables.", "Water the bed twice a week.",
             "Raised beds warm up early in spring."]

def _expected(model_folder: Path, documents: dict) -> list[tuple]:
    "(id, score) best first, scored by a CrossEncoder loaded on its own."
    from sentence_transformers import CrossEncoder
    scores = CrossEncoder(str(model_folder), device="cpu").predict([(QUERY, d) for d in documents.values()])
    return sorted(zip(documents, map(float, scores)), key=lambda p: -p[1])

def _printed(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

def _rerank(model_folder: Path, documents: str, *options) -> int:
    return main(["rerank", str(model_folder), "--query", QUERY, "--documents", documents, *options])

def test_rerank_command_prints_one_json_line_per_result(model_folder, tmp_path, capsys, monkeypatch):
    text = tmp_path/"candidates.txt"; text.write_text(DOCUMENTS[0] + "\n\n" + "\n".join(DOCUMENTS[1:]) + "\n")
    assert _rerank(model_folder, str(text), "--top-k", "2") == 0
    results = _printed(capsys)
    by_line = {1: DOCUMENTS[0], 3: DOCUMENTS[1], 4: DOCUMENTS[2]} # ids: line numbers, the blank line skipped
    expected = _expected(model_folder, by_line)
    assert [r["rank"] for r in results] == [1, 2] and [r["id"] for r in results] == [i for i, _ in expected[:2]]
    assert [r["score"] for r in results] == pytest.approx([s for _, s in expected[:2]], abs=1e-5)
    assert results[0]["text"] == by_line[results[0]["id"]]

    by_key = {f"faq-{i}": d for i, d in enumerate(DOCUMENTS)}
    as_json = tmp_path/"candidates.json"; as_json.write_text(json.dumps(by_key))
    assert _rerank(model_folder, str(as_json)) == 0
    assert [r["id"] for r in _printed(capsys)] == [i for i, _ in _expected(model_folder, by_key)]

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(DOCUMENTS)))
    assert _rerank(model_folder, "-", "--top-k", "1") == 0
    assert [r["id"] for r in _printed(capsys)] == [_expected(model_folder, dict(enumerate(DOCUMENTS, 1)))[0][0]]

def test_rerank_command_prints_results_on_stdout_and_nothing_on_stderr(model_folder, tmp_path):
    "No 'Loading weights' bars, no library notices: a script reading the command's output sees JSON lines only."
    text = tmp_path/"candidates.txt"; text.write_text("\n".join(DOCUMENTS) + "\n")
    done = subprocess.run([sys.executable, "-m", "reranker_tune.cli", "rerank", str(model_folder), "--query", QUERY,
                           "--documents", str(text)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0 and len(done.stdout.splitlines()) == len(DOCUMENTS)
    assert [line for line in done.stderr.splitlines() if "served as the cross-encoder alone" not in line
            and "warnings.warn" not in line] == [], done.stderr

@pytest.mark.parametrize("documents, message", [
    ("nope.txt", "nope.txt: no such documents file"), ("blank.txt", "blank.txt: no documents"),
    ("list.json", "list.json: no documents"), ("bad.json", "bad.json: not valid JSON"),
    ("latin1.txt", "latin1.txt: line 2 is not UTF-8 text")])
def test_rerank_command_refuses_bad_documents_in_one_line(model_folder, tmp_path, capsys, documents, message):
    (tmp_path/"blank.txt").write_text("\n  \n"); (tmp_path/"list.json").write_text("[]")
    (tmp_path/"bad.json").write_text('["a",'); (tmp_path/"latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    assert _rerank(model_folder, str(tmp_path/documents)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and message in captured.err

def test_rerank_command_on_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    text = tmp_path/"candidates.txt"; text.write_text("a\n")
    assert _rerank(tmp_path/"no-run", str(text)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("reranker-tune: error: ") and "no-run" in err[0]

# ---- the one parser: train, --version ----

def test_train_with_a_bad_config_is_one_line_naming_the_file(tmp_path, capsys):
    "`reranker-tune train --config FILE` goes to advanced_training.train_from_config; a bad file: status 2, one line."
    path = tmp_path/"run.yaml"
    path.write_text(yaml.safe_dump({"base_model": "all-MiniLM-L6-v2", "loss": "BinaryCrossEntropyLoss",
                                    "source": str(tmp_path/"nope.jsonl"), "run_dir": str(tmp_path/"model")}))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reranker-tune: error: ") and str(path) in err[0], err
    assert not (tmp_path/"model").exists()

def test_version_and_one_parser(capsys):
    import reranker_tune
    with pytest.raises(SystemExit) as done: main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"reranker-tune {reranker_tune.__version__}"
    with pytest.raises(SystemExit): main(["train"]) # --config is required
    assert "--config" in capsys.readouterr().err
