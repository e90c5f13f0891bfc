"""Never touch what is not yours: the folders a run may write, what it leaves after a failure, a signal or a second
writer, and what a run folder records. Each test leaves the user's files, the previous finished run and the
working folder as they were, byte for byte."""
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pandas as pd, pytest, yaml
from reranker_tune.core import ConfigError, FOLDER_MARK, folder_mark, write_folder_mark
from reranker_tune.data import DataError, sample_pairs
from reranker_tune.pipeline import run_pipeline, JobConfig

ROOT = Path(__file__).resolve().parents[1]

def snapshot(folder: Path) -> dict:
    "Every file and link below `folder` (itself included) with its bytes or target: what 'untouched' compares."
    if folder.is_symlink() or folder.is_file():
        return {".": os.readlink(folder) if folder.is_symlink() else folder.read_bytes()}
    return {str(p.relative_to(folder)): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}

def source(n: int=30) -> pd.DataFrame: return sample_pairs().to_pandas().head(n)

@pytest.fixture(scope="module")
def models(tiny_bert, tiny_embedder) -> dict: return {"embedder": tiny_embedder, "base_model": tiny_bert}

@pytest.fixture(scope="module")
def finished(tmp_path_factory, models) -> Path:
    "One finished tiny run, runs/demo, that the tests below must never spoil."
    run_dir = tmp_path_factory.mktemp("faults")/"runs"/"demo"
    run_pipeline(source=source(), run_dir=run_dir, epochs=1, top_k=30, **models)
    return run_dir

@pytest.fixture
def user_files(tmp_path) -> Path:
    "A user's folder of notes and a file beside it, which no run may delete, rename or overwrite."
    (tmp_path/"notes").mkdir(); (tmp_path/"notes"/"ideas.md").write_text("my ideas")
    (tmp_path/"notes.txt").write_text("my notes")
    return tmp_path

# ---- 1-4, 13, 15: the run folder is checked before anything is read or written ----

@pytest.mark.parametrize("target, message", [("notes", "is a folder that reranker_tune did not write"),
                                             ("notes.txt", "is a file, not a folder")])
def test_a_run_dir_that_is_not_a_run_of_ours_is_refused_and_left_alone(user_files, models, target, message):
    before = snapshot(user_files)
    with pytest.raises(ConfigError, match=message) as error:
        run_pipeline(source=source(), run_dir=user_files/target, epochs=1, **models)
    assert target in str(error.value) and "It is left alone" in str(error.value)
    assert snapshot(user_files) == before, "nothing was deleted, renamed or written"

def test_the_package_s_own_sample_data_is_never_a_run_dir(models):
    from importlib.resources import files
    sample = Path(str(files("reranker_tune")/"sample_data"))
    before = snapshot(sample)
    with pytest.raises(ConfigError, match="did not write"): run_pipeline(run_dir=sample, epochs=1, **models)
    assert snapshot(sample) == before

def test_a_shared_config_cannot_point_a_run_at_a_user_folder(user_files, models, capsys, monkeypatch):
    "`reranker-tune run --config` with a run_dir someone else's folder: refused in one line, nothing started."
    from reranker_tune.cli import main
    config = user_files/"shared.yaml"
    config.write_text(yaml.safe_dump({**models, "run_dir": str(user_files/"notes"), "epochs": 1}))
    before = snapshot(user_files)
    assert main(["run", "--config", str(config)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert snapshot(user_files) == before

def test_a_linked_run_dir_is_written_through_the_link(tmp_path, models):
    "runs/latest -> runs/2026-12-01: the run goes to the link's target, the link stays a link to it."
    (tmp_path/"runs").mkdir(); (tmp_path/"runs"/"latest").symlink_to(tmp_path/"runs"/"2026-12-01")
    run_pipeline(source=source(), run_dir=tmp_path/"runs"/"latest", epochs=1, top_k=30, **models)
    run_pipeline(source=source(), run_dir=tmp_path/"runs"/"latest", epochs=1, top_k=30, **models) # replaces it
    link = tmp_path/"runs"/"latest"
    assert link.is_symlink() and Path(os.readlink(link)) == tmp_path/"runs"/"2026-12-01"
    assert (link/"shipped.json").is_file() and folder_mark(link)["finished"]
    assert sorted(p.name for p in (tmp_path/"runs").iterdir()) == ["2026-12-01", "latest"], "no .old or staging left"

@pytest.mark.parametrize("run_dir, message", [(".", "is the working folder"), ("/", "the root"),
                                              (123, "run_dir=123: a folder path is allowed"),
                                              ("", "a folder path is allowed")])
def test_run_dirs_that_name_no_folder_of_their_own_are_refused_up_front(tmp_path, models, monkeypatch, run_dir, message):
    monkeypatch.chdir(tmp_path)
    from reranker_tune import pipeline
    monkeypatch.setattr(pipeline, "load_job_data", lambda *a, **k: pytest.fail("data was read before the check"))
    with pytest.raises(ConfigError, match=message): run_pipeline(run_dir=run_dir, epochs=1, **models)
    assert list(tmp_path.iterdir()) == []

def test_a_run_dir_through_dot_dot_replaces_the_run_it_names(tmp_path, models):
    "runs/demo/model/.. is runs/demo: replaced as any finished run, never staged inside it."
    run_dir = tmp_path/"runs"/"demo"
    run_pipeline(source=source(), run_dir=run_dir, epochs=1, top_k=30, **models)
    run_pipeline(source=source(), run_dir=run_dir/"model"/"..", epochs=1, top_k=30, seed=3, **models)
    assert yaml.safe_load((run_dir/"config.yaml").read_text())["seed"] == 3
    assert sorted(p.name for p in (tmp_path/"runs").iterdir()) == ["demo"]

def test_a_run_inside_another_run_is_refused(finished, models):
    before = snapshot(finished)
    with pytest.raises(ConfigError, match="is inside the run folder"):
        run_pipeline(source=source(), run_dir=finished/"sub", epochs=1, **models)
    assert snapshot(finished) == before

def test_a_seed_numpy_cannot_take_is_refused(models, tmp_path):
    with pytest.raises(ConfigError, match=r"seed=4294967296: a whole number >= 0 and <= 4294967295"):
        run_pipeline(run_dir=tmp_path/"x", seed=2**32, **models)

# ---- 2: a model folder is saved only where the package saved one before ----

def test_fine_tune_refuses_to_save_over_a_user_folder_before_training(user_files, tiny_bert, monkeypatch):
    from reranker_tune import training
    from reranker_tune.training import load_reranker, fine_tune
    monkeypatch.setattr(training, "CrossEncoderTrainer", lambda *a, **k: pytest.fail("training started"))
    rows = pd.DataFrame({"query": ["q", "q"], "document": ["a", "b"], "label": [1.0, 0.0]})
    import datasets
    before = snapshot(user_files)
    with pytest.raises(ConfigError, match="save_to=.*did not write"):
        fine_tune(load_reranker(tiny_bert, device="cpu"), datasets.Dataset.from_pandas(rows),
                  "BinaryCrossEntropyLoss", user_files/"out", save_to=user_files/"notes")
    assert snapshot(user_files) == before

def test_train_config_cannot_save_over_a_user_folder(user_files, tiny_bert, capsys):
    from reranker_tune.cli import main
    (user_files/"train.csv").write_text("query,document,label\nq,a,1\nq,b,0\n")
    config = user_files/"train.yaml"
    config.write_text(yaml.safe_dump({"base_model": tiny_bert, "loss": "BinaryCrossEntropyLoss",
                                      "source": str(user_files/"train.csv"), "run_dir": str(user_files/"out"),
                                      "save_to": str(user_files/"notes"), "device": "cpu"}))
    before = snapshot(user_files/"notes")
    assert main(["train", "--config", str(config)]) == 2
    assert "did not write" in capsys.readouterr().err and snapshot(user_files/"notes") == before

# ---- 7, 8: modes as the umask says, `~` read one way ----

def test_run_folders_are_as_readable_as_the_umask_allows(tmp_path, models):
    old = os.umask(0o022)
    try: run_pipeline(source=source(), run_dir=tmp_path/"run", epochs=1, top_k=30, **models)
    finally: os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in [tmp_path/"run", *(tmp_path/"run").rglob("*")]}
    assert modes["run"] == 0o755 and modes["run/model"] == 0o755
    assert modes["run/model/model.safetensors"] == 0o644 and modes["run/shipped.json"] == 0o644
    assert set(modes.values()) <= {0o755, 0o644}, modes

def test_a_run_dir_with_a_tilde_is_the_home_folder_for_the_job_and_for_serving(tmp_path, models, monkeypatch):
    from reranker_tune.serving import Reranker
    home, work = tmp_path/"home", tmp_path/"work"
    home.mkdir(); work.mkdir(); monkeypatch.setenv("HOME", str(home)); monkeypatch.chdir(work)
    run_pipeline(source=source(), run_dir="~/runs/x", epochs=1, top_k=30, **models)
    assert (home/"runs"/"x"/"shipped.json").is_file() and list(work.iterdir()) == []
    assert Reranker("~/runs/x").rerank("when do I plant garlic", ["in autumn", "in a pot"])

# ---- 12, 17: one writer at a time; SIGTERM and killed writers leave nothing behind ----

HOLD = """
import sys, time
from reranker_tune.core import staged_folder
with staged_folder(sys.argv[1]) as folder:
    print("holding", flush=True); time.sleep(60)
"""

def test_a_second_writer_is_refused_naming_the_holder_and_nothing_is_written(finished, models):
    before = snapshot(finished)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(finished)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "holding"
        from reranker_tune import pipeline
        with pytest.raises(ConfigError, match=f"process {holder.pid} is writing this folder now"):
            run_pipeline(source=source(), run_dir=finished, epochs=1, **models)
    finally: holder.send_signal(signal.SIGTERM); holder.wait(30)
    assert holder.returncode == 143, "SIGTERM ends the writer with the conventional status"
    assert snapshot(finished) == before
    assert sorted(p.name for p in finished.parent.iterdir()) == ["demo"], "the holder's staging folder and lock are gone"

SLOW_RUN = """
import sys, time
from reranker_tune import pipeline
def slow(*args, **kwargs): print("training", flush=True); time.sleep(60)
pipeline.fine_tune = slow
import pandas as pd
from reranker_tune.data import sample_pairs
pipeline.run_pipeline(source=sample_pairs().to_pandas().head(30), run_dir=sys.argv[1], embedder=sys.argv[2],
                      base_model=sys.argv[3], epochs=1)
"""

def test_sigterm_mid_run_removes_the_staging_folder_and_keeps_the_previous_run(finished, models):
    before = snapshot(finished)
    run = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(finished), models["embedder"], models["base_model"]],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        while (line := run.stdout.readline()) and line.strip() != "training": pass
        assert list(finished.parent.glob(".demo.partial-*")), "the run is staging"
        run.send_signal(signal.SIGTERM); run.wait(30)
    finally: run.kill() if run.poll() is None else None
    assert run.returncode == 143
    assert snapshot(finished) == before and sorted(p.name for p in finished.parent.iterdir()) == ["demo"]

def test_the_next_run_cleans_up_what_a_killed_writer_left(tmp_path, models):
    "SIGKILL cannot be caught: its staging folder stays until the next run of that name, which removes it."
    run_dir = tmp_path/"runs"/"demo"
    run_pipeline(source=source(), run_dir=run_dir, epochs=1, top_k=30, **models)
    killed = tmp_path/"runs"/".demo.partial-999999-abc"; killed.mkdir()
    write_folder_mark(killed, "run", finished=False); (killed/"metrics.json").write_text("{}")
    strangers = tmp_path/"runs"/".demo.partial-mine"; strangers.mkdir(); (strangers/"keep.txt").write_text("mine")
    run_pipeline(source=source(), run_dir=run_dir, epochs=1, top_k=30, **models)
    assert sorted(p.name for p in (tmp_path/"runs").iterdir()) == [".demo.partial-mine", "demo"]
    assert (strangers/"keep.txt").read_text() == "mine", "a folder the package did not mark is never removed"

def test_a_killed_run_s_staging_folder_is_not_served(finished, tmp_path):
    import shutil
    from reranker_tune.serving import Reranker, ModelFolderError
    staging = Path(shutil.copytree(finished, tmp_path/".demo.partial-4242-xyz"))
    write_folder_mark(staging, "run", finished=False)
    with pytest.raises(ModelFolderError, match="an unfinished run"): Reranker(staging)
    (staging/FOLDER_MARK).unlink() # a staging folder of an older version, without a mark: its name says it
    with pytest.raises(ModelFolderError, match="an unfinished run"): Reranker(staging)

# ---- 5, 6, 14, 16, 19: data files and what a run records of them ----

@pytest.mark.parametrize("name", ["faq#1.db", "faq?.db", "faq%20v2.db"])
def test_sqlite_paths_with_uri_characters_open_the_file_they_name(tmp_path, name):
    import sqlite3
    from reranker_tune.data import load_source
    with sqlite3.connect(tmp_path/name) as con: source(6).to_sql("faq", con, index=False)
    assert len(load_source(tmp_path/name)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no empty database created beside it"

def test_the_job_reads_a_sqlite_table_named_by_its_table_parameter(tmp_path, models, capsys):
    import sqlite3
    from reranker_tune.batch import coerce_parameters
    with sqlite3.connect(tmp_path/"qa.db") as con:
        source(30).to_sql("faq", con, index=False); source(3).to_sql("log", con, index=False)
    with pytest.raises(DataError, match=r"has tables \['faq', 'log'\]; choose one with table="):
        run_pipeline(source=tmp_path/"qa.db", run_dir=tmp_path/"run", **models)
    result = run_pipeline(source=tmp_path/"qa.db", table="faq", run_dir=tmp_path/"run", epochs=1, top_k=30, **models)
    assert yaml.safe_load((result["run_dir"]/"config.yaml").read_text())["table"] == "faq"
    assert coerce_parameters({"table": "faq"}, "--param") == {"table": "faq"}

def test_an_in_memory_source_is_recorded_by_a_summary_never_its_rows(tmp_path, models, capsys):
    rows = {c: list(v) for c, v in source().to_dict("list").items()}
    secret = rows["answer"][0]
    result = run_pipeline(source=rows, run_dir=tmp_path/"run", epochs=1, top_k=30, **models)
    folder, log = Path(result["run_dir"]), capsys.readouterr().out
    config = (folder/"config.yaml").read_text()
    assert "<in memory: dict, 30 rows, columns ['query', 'answer'], sha256 " in yaml.safe_load(config)["source"]
    for text in (config, (folder/"model"/"README.md").read_text(), log.split("\n")[0]):
        assert secret not in text and rows["query"][5] not in text

def test_labelled_pairs_with_one_document_per_query_are_refused_before_any_model_loads(tmp_path, models, monkeypatch):
    from reranker_tune import pipeline
    monkeypatch.setattr(pipeline, "load_embedder", lambda *a, **k: pytest.fail("a model was loaded"))
    rows = [{"query": f"question {i}", "document": f"answer {i}", "label": i % 2} for i in range(40)]
    path = tmp_path/"one_each.jsonl"; path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for options in ({}, {"dev_size": 0}):
        with pytest.raises(DataError, match="none of its 8 held-out queries has both a relevant and a non-relevant"):
            run_pipeline(source=path, run_dir=tmp_path/"run", **models, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one_each.jsonl"]

def test_a_broken_config_json_in_the_base_model_names_the_file(tmp_path, tiny_bert, tiny_embedder):
    import shutil
    base = Path(shutil.copytree(tiny_bert, tmp_path/"base"))
    (base/"config.json").write_text('{"max_position_embeddings": 256,')
    with pytest.raises(ConfigError, match=r"base/config.json: line 1 is not valid JSON"):
        run_pipeline(run_dir=tmp_path/"run", embedder=tiny_embedder, base_model=base)

def test_a_dataset_folder_with_a_broken_state_file_names_it(tmp_path):
    import datasets
    from reranker_tune.data import load_source
    datasets.Dataset.from_pandas(source(4)).save_to_disk(str(tmp_path/"qa"))
    (tmp_path/"qa"/"state.json").write_text('{"_data_files": [')
    with pytest.raises(DataError, match=r"qa/state.json: line 1 is not valid JSON"): load_source(tmp_path/"qa")

def test_a_broken_heldout_line_names_the_file_and_line(finished, tmp_path):
    import shutil
    from reranker_tune.serving import served_metrics
    copy = Path(shutil.copytree(finished, tmp_path/"copy"))
    lines = (copy/"heldout.jsonl").read_text().splitlines()
    (copy/"heldout.jsonl").write_text("\n".join(lines[:2] + [lines[2][:40]] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=r"heldout.jsonl: line 3 is not valid JSON"): served_metrics(copy)

# ---- 9, 21: the rule is read whole, and its retriever as strictly as its cross-encoder ----

@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(normalisation="min-max per query"), "normalisation 'min-max per query' is not the one"),
    (lambda r: r["cross_encoder"].update(precision="int4"), "cross_encoder.precision 'int4'"),
    (lambda r: r["cross_encoder"].update(folder="../elsewhere/model"), "is not a folder inside the run"),
    (lambda r: r["cross_encoder"].update(folder="/tmp"), "is not a folder inside the run"),
    (lambda r: r.update(temperature=0.5), r"unknown key\(s\) \['temperature'\]")])
def test_a_shipped_rule_with_anything_unknown_is_refused_when_it_is_read(finished, tmp_path, change, message):
    import shutil
    from reranker_tune.serving import Reranker, ModelFolderError
    copy = Path(shutil.copytree(finished, tmp_path/"copy"))
    rule = json.loads((copy/"shipped.json").read_text()); rule["fusion_weight"], rule["shipped"] = 0.5, "fine-tuned + retriever"
    change(rule); (copy/"shipped.json").write_text(json.dumps(rule))
    with pytest.raises(ModelFolderError, match=message): Reranker(copy)

def test_shipped_json_names_the_retriever_and_no_path_of_this_machine(finished):
    rule = json.loads((finished/"shipped.json").read_text())
    assert "resolved_path" not in rule["retriever"]
    assert str(finished.parent) not in (finished/"model"/"README.md").read_text()
    assert str(finished.parent) not in (finished/"README.md").read_text()

def test_the_served_retriever_is_loaded_from_safetensors_only(finished, tmp_path, tiny_bert):
    "A run whose retriever folder holds pickled weights: the cross-encoder would be refused, so is the retriever."
    import shutil
    from sentence_transformers import SentenceTransformer, models as st_models
    from reranker_tune.serving import Reranker
    pickled = tmp_path/"pickled-retriever"
    SentenceTransformer(modules=[st_models.Transformer(tiny_bert), st_models.Pooling(32)], device="cpu").save(str(pickled))
    import torch, safetensors.torch
    for weights in pickled.rglob("*.safetensors"): # the same weights, pickled: what an older save leaves
        torch.save(safetensors.torch.load_file(str(weights)), weights.with_name("pytorch_model.bin")); weights.unlink()
    assert SentenceTransformer(str(pickled), device="cpu").encode(["loads when pickles are allowed"]).shape == (1, 32)
    assert not list(pickled.rglob("*.safetensors")) and list(pickled.rglob("*.bin"))
    copy = Path(shutil.copytree(finished, tmp_path/"copy"))
    rule = json.loads((copy/"shipped.json").read_text())
    rule.update(fusion_weight=0.0, shipped="retriever", retriever={**rule["retriever"], "model": str(pickled)})
    (copy/"shipped.json").write_text(json.dumps(rule))
    with pytest.warns(UserWarning, match="ships the retriever's order"): reranker = Reranker(copy)
    with pytest.raises(OSError, match="safetensors"): reranker.rerank("a question", ["one", "two"])

def test_a_yaml_file_alone_cannot_turn_on_remote_code(tmp_path, tiny_bert, capsys, monkeypatch):
    from reranker_tune import advanced_training
    from reranker_tune.cli import main
    (tmp_path/"train.csv").write_text("query,document,label\nq,a,1\nq,b,0\n")
    config = tmp_path/"train.yaml"
    config.write_text(yaml.safe_dump({"base_model": tiny_bert, "loss": "BinaryCrossEntropyLoss", "trust_remote_code": True,
                                      "source": str(tmp_path/"train.csv"), "run_dir": str(tmp_path/"out")}))
    assert main(["train", "--config", str(config)]) == 2
    assert "add --trust-remote-code to the command line" in capsys.readouterr().err
    seen = {}
    def load(base, **options): seen.update(options); raise RuntimeError("stop here")
    monkeypatch.setattr(advanced_training, "load_reranker", load)
    with pytest.raises(RuntimeError, match="stop here"): main(["train", "--config", str(config), "--trust-remote-code"])
    assert seen["trust_remote_code"] is True

# ---- 11: long texts are clipped before they are tokenised; absurd ones refused by the server ----

def test_long_texts_are_clipped_before_tokenising_in_serving_and_training(finished, tmp_path, monkeypatch, tiny_bert):
    "A 12,000-word query and answer took gigabytes in the tokenizer's pair truncation: the model now sees them cut."
    import shutil, datasets
    from sentence_transformers import CrossEncoder
    from reranker_tune import training
    from reranker_tune.serving import Reranker
    from reranker_tune.data import CHARACTERS_PER_TOKEN
    copy = Path(shutil.copytree(finished, tmp_path/"alone"))
    rule = json.loads((copy/"shipped.json").read_text()); rule.update(fusion_weight=1.0, shipped="fine-tuned")
    (copy/"shipped.json").write_text(json.dumps(rule))
    seen, predict = [], CrossEncoder.predict
    def spy(self, pairs, *args, **kwargs):
        seen.extend(len(t) for pair in pairs for t in pair); return predict(self, pairs, *args, **kwargs)
    monkeypatch.setattr(CrossEncoder, "predict", spy)
    words, limit = " ".join(["soil"]*12_000), 128*CHARACTERS_PER_TOKEN # about 60,000 characters
    Reranker(copy).rerank(words, [words, "a short answer"])
    assert max(seen) == limit, "the cross-encoder saw texts cut to max_length's worth of characters"
    class Stop(Exception): pass
    captured = {}
    def trainer(**kwargs): captured.update(kwargs); raise Stop
    monkeypatch.setattr(training, "CrossEncoderTrainer", trainer)
    rows = datasets.Dataset.from_dict({"query": [words, "q"], "document": [words, "d"], "label": [1.0, 0.0]})
    with pytest.raises(Stop):
        training.fine_tune(training.load_reranker(tiny_bert, max_length=128, device="cpu"), rows,
                           "BinaryCrossEntropyLoss", tmp_path/"out")
    assert max(len(t) for c in ("query", "document") for t in captured["train_dataset"][c]) == limit

def test_absurdly_long_requests_are_refused_naming_what_is_too_long(finished):
    from reranker_tune.serving import Reranker
    reranker = Reranker(finished)
    with pytest.raises(ValueError, match=r"documents at \[1\] \(1 in all\) are longer than 100,000 characters"):
        reranker.rerank("a question", ["fine", "x"*200_000])
    with pytest.raises(ValueError, match="query is 200,000 characters long"): reranker.rerank("q"*200_000, ["fine"])

# ---- 18: Ctrl-C says what is kept; the kernel's own stderr is not the user's ----

def test_ctrl_c_says_the_previous_run_is_kept_when_run_pipeline_wrote_it(finished, monkeypatch, capsys):
    from reranker_tune import batch
    from reranker_tune.cli import main
    def interrupted(*args, **kwargs): raise KeyboardInterrupt
    monkeypatch.setattr(batch.papermill, "execute_notebook", interrupted)
    before = snapshot(finished)
    assert main(["run", "--name", "demo", "--runs-dir", str(finished.parent), "--param", "epochs=2"]) == 130
    assert capsys.readouterr().err.strip() == "reranker-tune: interrupted; demo was not finished, the previous finished run is kept"
    assert snapshot(finished) == before and sorted(p.name for p in finished.parent.iterdir()) == ["demo"]

def test_the_kernel_process_writes_its_stderr_to_a_log(tmp_path):
    "What ipykernel prints on its own stderr (transport warnings, a ZMQ traceback after a second Ctrl-C) is logged."
    import asyncio
    from reranker_tune.batch import _kernel_logging_to
    log = tmp_path/"kernel.log"
    manager = _kernel_logging_to(log)(kernel_name="python3")
    async def roundtrip():
        await manager.start_kernel()
        client = manager.client(); client.start_channels(); await client.wait_for_ready(timeout=60)
        client.execute("import sys; print('to the log', file=sys.__stderr__, flush=True)")
        await asyncio.sleep(2); client.stop_channels(); await manager.shutdown_kernel(now=True)
    asyncio.run(roundtrip())
    assert "to the log" in log.read_text()
