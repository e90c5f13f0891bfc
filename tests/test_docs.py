"The docs site renders from the notebooks without Quarto, with no broken link of any kind; README.md is its home page."
import contextlib, io, json, os, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import docsite
from forking import run_forked


def _build_in(root: Path) -> tuple[int, str]: # `docsite.main(["build"])`'s exit status, what it printed
    "What `make docs` runs, with `root` the working folder."
    os.chdir(root); os.environ.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said): status = docsite.main(["build"])
    return status, said.getvalue()

def test_site_renders_every_notebook_with_working_links(tmp_path):
    "`make docs`'s one command, in a copy of the project so that the checkout is left alone."
    modidx_before = (ROOT/"reranker_tune"/"_modidx.py").read_text()
    shutil.copytree(ROOT/"nbs", tmp_path/"nbs", ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
    # the package is copied too: building the docs rewrites its _modidx.py, which must not touch the checkout
    shutil.copytree(ROOT/"reranker_tune", tmp_path/"reranker_tune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT/"tools", tmp_path/"tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT/"settings.ini", tmp_path/"settings.ini")
    # `python tools/docsite.py build` in the copy, in a fork of this worker, whose imports the chapters need
    returned, result = run_forked(_build_in, tmp_path)
    assert returned and result[0] == 0, result if not returned else result[1][-3000:]
    # nbdev runs every cell holding an import while it builds the pages, out of order: imports go in cells of their own
    assert "Found cells containing imports and other code" not in result[1], result[1][-3000:]
    site = tmp_path/"_docs"
    for notebook in (ROOT/"nbs").glob("*.ipynb"):  # each page under the name Quarto gives it (nbdev's `output-file`)
        page = re.sub(r"^\d+[a-zA-Z0-9]*_", "", notebook.stem)
        assert (site/f"{page}.html").exists(), f"no page for {notebook.name}"
    assert (site/"training.html").exists() and not (site/"04_training.html").exists()
    index = (site/"index.html").read_text()
    assert "Quick start" in index and "make demo" in index and 'href="training.html"' in index
    assert "search.js" in index and "smalldocsSearchIndex" in (site/"site_libs"/"smalldocs.js").read_text()
    assert docsite.broken_links(site, own_url=docsite.site_url()) == []
    for page in site.glob("*.html"): # a temporary folder of the machine that built the page means nothing to a reader
        assert not re.search(r"/tmp/tmp\w+/", page.read_text()), page.name
    assert 'class="dataframe"' in (site/"results.html").read_text() and "table.dataframe" in (site/"styles.css").read_text(), \
        "DataFrames are styled: padded cells, numbers on one line, wide tables scroll"
    assert (ROOT/"reranker_tune"/"_modidx.py").read_text() == modidx_before, "building the docs changed the checkout"


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (tmp_path/name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path/name).write_text(body)
    return tmp_path


def test_link_check_fails_on_every_kind_of_broken_link(tmp_path):
    "Pages, anchors, images, CSS and JS assets, CSS urls, the search index, raw Markdown links, own absolute links."
    site = _site(tmp_path, {
        "index.html": """<html><head><link rel="stylesheet" href="site.css"><script src="site.js"></script>
            <link rel="stylesheet" href="gone.css"><script src="gone.js"></script></head><body>
            <a href="guide.html">ok</a> <a href="guide.html#setup">ok</a> <a href="#top" id="top">ok</a>
            <a href="https://example.org/x?y=1#z">ok</a> <a href="mailto:a@b.org">ok</a>
            <img src="data:image/png;base64,AA">
            <a href="missing.html">page</a> <a href="guide.html#nowhere">anchor</a> <img src="plot.png">
            <a href="https://example.org/site/guide.html">own</a> <a href="https://exa mple/">bad url</a>
            <a href="../outside.html">outside</a>
            <pre><code># see [`fine_tune`](guide.html#fine_tune)</code></pre></body></html>""",
        "guide.html": '<h2 id="setup">Setup</h2><a name="legacy"></a><a href="index.html#top">back</a>',
        "site.css": "@font-face { src: url('fonts/icons.woff2?v=1') } .x { background: url(gone.svg) }",
        "site.js": "", "fonts/icons.woff2": "",
        "search.json": json.dumps([{"href": "guide.html#setup"}, {"href": "guide.html#gone"}]),
    })
    problems = docsite.broken_links(site, own_url="https://example.org/site/")
    expected = ["gone.css", "gone.js", "missing.html", "guide.html#nowhere", "plot.png",
                "https://example.org/site/guide.html", "https://exa mple/", "../outside.html",
                "[`fine_tune`](guide.html#fine_tune)", "gone.svg", "guide.html#gone"]
    for url in expected:
        assert sum(url in p for p in problems) >= 1, (url, problems)
    assert len(problems) == len(expected), problems
    assert docsite.main(["check-links", str(site)]) == 1  # what `make docs` runs: a broken link fails it
    (site/"index.html").write_text('<a href="guide.html#setup" id="top">ok</a>'); (site/"search.json").unlink()
    (site/"site.css").write_text("")
    assert docsite.broken_links(site) == [] and docsite.main(["check-links", str(site)]) == 0


def test_processing_relinks_pages_and_signatures():
    "Site links turn relative and follow renamed pages; code keeps plain names; a glob lists a chapter once it exists."
    names = {"04_training.ipynb": "training.ipynb", "index.ipynb": "index.ipynb"}
    md = "See [`fine_tune`](https://h.io/p/training.html#fine_tune) and [the chapter](04_training.ipynb).\n" \
         "```python\ndef f(\n    x, # from [`fine_tune`](https://h.io/p/training.html#fine_tune)\n):\n```"
    nb = {"cells": [{"cell_type": "markdown", "source": md},
                    {"cell_type": "code", "source": "", "outputs": [{"data": {"text/markdown": md.splitlines(True)}}]}]}
    nb = docsite.relink_notebook(nb, "https://h.io/p/", names)
    for text in (nb["cells"][0]["source"], nb["cells"][1]["outputs"][0]["data"]["text/markdown"]):
        assert "[`fine_tune`](training.html#fine_tune) and [the chapter](training.ipynb)" in text
    assert "x, # from `fine_tune`\n" in nb["cells"][1]["outputs"][0]["data"]["text/markdown"]
    sidebar = ["index.ipynb", {"section": "Stages", "contents": ["04_training.ipynb", "04b_*.ipynb"]}]
    expected = ["index.ipynb", {"section": "Stages", "contents": ["training.ipynb"]}]
    assert docsite.sidebar_entries(sidebar, names) == expected
    names["04b_advanced_training.ipynb"] = "advanced_training.ipynb"
    assert docsite.sidebar_entries(sidebar, names)[1]["contents"] == ["training.ipynb", "advanced_training.ipynb"]


def test_readme_is_written_from_index():
    "README.md is nbs/index.ipynb written out (`make readme`): edit the notebook, and nbdev_readme loses nothing."
    readme = (ROOT/"README.md").read_text()
    written = docsite.readme(ROOT/"nbs"/"index.ipynb")
    assert readme == written, "README.md differs from nbs/index.ipynb: run `make readme`"
    assert "make test" in readme and "### What the demo prints" in readme and "](nbs/04_training.ipynb)" in readme


def test_every_page_title_is_the_stage_it_documents():
    "The sidebar lists pages by their titles: one case for all, the module (or page) name, as nbdev's own sites do."
    for notebook in sorted((ROOT/"nbs").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        title = next("".join(c["source"]) for c in cells if c["cell_type"] == "markdown").splitlines()[0]
        assert title.startswith("# ") and title == title.lower(), (notebook.name, title)
        module = [l for c in cells for l in "".join(c["source"]).splitlines() if l.startswith("#| default_exp ")]
        if module: assert title == "# " + module[0].split()[-1], (notebook.name, title)
