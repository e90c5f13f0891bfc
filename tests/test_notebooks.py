"Each notebook is a chapter and a test: run it as nbdev_test does (cells flagged slow or gpu are skipped)."
import subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT/"nbs").glob("[0-9]*.ipynb")) + ["index.ipynb"]

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook(name):
    done = subprocess.run([str(Path(sys.executable).parent/"nbdev_test"), "--path", str(ROOT/"nbs"/name), "--do_print"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_nbformat(name):
    "JupyterLab and papermill refuse or warn on notebooks that break the nbformat schema."
    import nbformat
    nbformat.validate(nbformat.read(ROOT/"nbs"/name, as_version=4))
