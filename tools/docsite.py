"""The docs site without Quarto, and the checks that keep it and the notebooks' stored outputs clean.

`python tools/docsite.py build` is `make docs`: nbdev's notebook processing into `_proc/`, the pages named as
Quarto names them (`output-file`), links between pages made relative, smalldocs into `_docs/`, a search index
that works from `file://`, then `check-links`, which fails on any broken link. `check-outputs` and
`clean-outputs` look at what executed notebooks keep in `nbs/*.ipynb`.
"""
from __future__ import annotations
import html, json, os, posixpath, re, shutil, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import yaml

# ---------------------------------------------------------------- building the site

FRONT_OUTPUT_FILE = re.compile(r"^output-file:\s*(\S+)\.html\s*$", re.M)
FENCE = re.compile(r"^(```|~~~)")
MD_LINK = re.compile(r"\[(`[^`\n]+`)\]\([^()\s]+\)")  # what nbdev's doc links look like: [`name`](url)


def page_names(proc: Path) -> dict[str, str]:
    "Map each processed notebook to the name Quarto gives its page: `04_training.ipynb` -> `training.ipynb`."
    names = {}
    for nb in sorted(proc.glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        found = FRONT_OUTPUT_FILE.search("".join(cells[0]["source"])) if cells else None
        names[nb.name] = f"{found.group(1)}.ipynb" if found else nb.name
    return names


def site_url() -> str:
    "The docs' address as nbdev writes it into doc links: `doc_host` + `doc_baseurl`, ending in `/`."
    from nbdev.config import get_config
    cfg = get_config()
    return urljoin(cfg.doc_host + "/", cfg.doc_baseurl).rstrip("/") + "/"


def unlink_code(markdown: str) -> str:
    "Turn nbdev's doc links back into plain `name` inside fenced code, where Markdown would show them raw."
    lines, fence = markdown.split("\n"), False
    for i, line in enumerate(lines):
        if FENCE.match(line.lstrip()): fence = not fence
        elif fence: lines[i] = MD_LINK.sub(r"\1", line)
    return "\n".join(lines)


def rename_refs(text: str, names: dict[str, str]) -> str:
    "Point links to a notebook at its renamed source, so that smalldocs finds the page."
    for old, new in names.items():
        if old != new: text = re.sub(rf"(\]\(|href=[\"']){re.escape(old)}", rf"\g<1>{new}", text)
    return text


def relink_notebook(nb: dict, own_url: str, names: dict[str, str]) -> dict:
    "Make a processed notebook's links to this site relative, and its signatures free of Markdown links."
    for cell in nb["cells"]:
        source = "".join(cell["source"]).replace(own_url, "")
        cell["source"] = rename_refs(source, names) if cell["cell_type"] == "markdown" else source
        for out in cell.get("outputs", []):
            md = out.get("data", {}).get("text/markdown")
            if md is not None:
                out["data"]["text/markdown"] = unlink_code(rename_refs("".join(md).replace(own_url, ""), names))
    return nb


def sidebar_entries(contents: list, names: dict[str, str]) -> list:
    "Rename the sidebar's pages; a glob (a chapter that may not exist yet) becomes the pages it matches now."
    out = []
    for entry in contents:
        if isinstance(entry, str) and any(c in entry for c in "*?["):
            out += [names[n] for n in sorted(names) if Path(n).match(entry)]
        elif isinstance(entry, str): out.append(names.get(entry, entry))
        elif isinstance(entry, dict) and isinstance(entry.get("contents"), list):
            out.append({**entry, "contents": sidebar_entries(entry["contents"], names)})
        else: out.append(entry)
    return out


def name_pages(proc: Path) -> dict[str, str]:
    "Rename `_proc/`'s notebooks to their `output-file` names, relink them, and follow in the sidebar."
    names, own_url = page_names(proc), site_url()
    for old, new in names.items():
        nb = relink_notebook(json.loads((proc/old).read_text(encoding="utf-8")), own_url, names)
        (proc/old).unlink()
        (proc/new).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    sidebar = yaml.safe_load((proc/"sidebar.yml").read_text(encoding="utf-8"))
    bar = sidebar["website"]["sidebar"]
    bar["contents"] = sidebar_entries(bar["contents"], names)
    (proc/"sidebar.yml").write_text(yaml.safe_dump(sidebar, sort_keys=False), encoding="utf-8")
    return names


SEARCH_SCRIPT = '<script src="search.js"></script>'
FETCH_INDEX = 'const r = await fetch(offset + "search.json");'
READ_INDEX = ('const r = window.smalldocsSearchIndex ? new Response(JSON.stringify(window.smalldocsSearchIndex))'
              ' : await fetch(offset + "search.json");')


def add_search_script(proc: Path) -> None:
    "Have every page load `search.js`, the search index as a script: browsers refuse `fetch` on `file://`."
    quarto = yaml.safe_load((proc/"_quarto.yml").read_text(encoding="utf-8"))
    quarto["format"]["html"]["include-in-header"] = [{"text": SEARCH_SCRIPT}]
    (proc/"_quarto.yml").write_text(yaml.safe_dump(quarto, sort_keys=False), encoding="utf-8")


def write_search_script(site: Path) -> None:
    "Write the index smalldocs made as `search.js`, and have smalldocs' search read it before fetching."
    index = (site/"search.json").read_text(encoding="utf-8")
    (site/"search.js").write_text(f"window.smalldocsSearchIndex = {index};\n", encoding="utf-8")
    js = site/"site_libs"/"smalldocs.js"
    text = js.read_text(encoding="utf-8")
    if FETCH_INDEX not in text: raise SystemExit(f"{js}: smalldocs changed how it loads search.json; update docsite.py")
    js.write_text(text.replace(FETCH_INDEX, READ_INDEX), encoding="utf-8")


def process_notebooks(root: Path) -> None:
    "nbdev's processing of `root`'s notebooks into `root/_proc`, in this process, with `root`'s settings.ini."
    import nbdev.doclinks
    from nbdev.config import get_config
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.serve import proc_nbs
    before = Path.cwd()
    os.chdir(root); get_config.cache_clear() # nbdev reads the settings of the working folder, once
    try: refresh_quarto_yml(); nbdev.doclinks._build_modidx(); proc_nbs(get_config().nbs_path, n_workers=0)
    finally: os.chdir(before); get_config.cache_clear()


def build(root: Path) -> list[str]:
    "Build `root/_docs` from the notebooks as `make docs` does; return its broken links (empty when none)."
    for d in ("_proc", "_docs"): shutil.rmtree(root/d, ignore_errors=True)
    process_notebooks(root)
    proc = root/"_proc"
    shutil.rmtree(proc/"runs", ignore_errors=True)
    name_pages(proc)
    add_search_script(proc)
    smalldocs = Path(sys.executable).parent/"smalldocs"
    done = subprocess.run([str(smalldocs), "render", "--quiet", "."], cwd=proc, capture_output=True, text=True)
    (proc/"smalldocs.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode: raise SystemExit(f"smalldocs failed:\n{done.stdout}{done.stderr}")
    shutil.move(proc/"_docs", root/"_docs")
    write_search_script(root/"_docs")
    return broken_links(root/"_docs", own_url=site_url())

# ---------------------------------------------------------------- README.md from the site's home page

CHAPTER_LINK = re.compile(r"\]\((\w+\.ipynb)")


def readme(index: Path) -> str:
    "README.md as `index.ipynb` writes it: its Markdown cells, with chapter links pointing into `nbs/`."
    cells = json.loads(Path(index).read_text(encoding="utf-8"))["cells"]
    text = "\n\n".join("".join(c["source"]).strip("\n") for c in cells if c["cell_type"] == "markdown")
    return CHAPTER_LINK.sub(r"](nbs/\1", text) + "\n"

# ---------------------------------------------------------------- checking every link of the site

LINK_ATTRS = {"href", "src", "poster", "data", "action", "formaction"}
SKIPPED = ("javascript:", "mailto:", "data:", "tel:", "about:")
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")
RAW_MD_LINK = re.compile(  # [text](target) left as text, when the target is a URL, an anchor or a page
    r"\[[^\[\]\n]{1,200}\]\((?:https?://[^()\s]+|#[\w.-]*|[\w./-]+\.(?:html|ipynb|md)(?:#[\w.-]*)?)\)")
HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$")


class _Page(HTMLParser):
    "The links, the ids and the text of one HTML page."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.ids, self.text = [], set(), []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if v is None: continue
            if k in ("id", "name") and (k == "id" or tag == "a"): self.ids.add(v)
            elif k in LINK_ATTRS: self.links.append(v)
            elif k in ("srcset", "imagesrcset"): self.links += [s.split()[0] for s in v.split(",") if s.strip()]
            elif k == "style": self.links += [m.group(2) or m.group(4) for m in CSS_URL.finditer(v)]
    handle_startendtag = handle_starttag
    def handle_data(self, data): self.text.append(data)


def parse_page(path: Path) -> _Page:
    "Read one HTML page's links, ids and text."
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def external_problem(url: str, own_url: str | None) -> str | None:
    "Check an http(s) link by its syntax only (no network); a link into this site itself must be relative."
    parts = urlsplit(url)
    if not HOST.match(parts.netloc) or "." not in parts.netloc.split(":")[0] or re.search(r"\s", url):
        return "not a well-formed URL"
    if own_url and url.startswith(own_url): return "an absolute link into this site: it breaks off-line and elsewhere"
    return None


def link_problem(url: str, source: Path, site: Path, anchors, own_url: str | None = None) -> str | None:
    "Say what is wrong with one link written in `source` (a file in `site`), or None when it resolves."
    url = html.unescape(url.strip())
    if not url or url.lower().startswith(SKIPPED): return None
    if re.match(r"^[a-zA-Z][\w+.-]*:|^//", url):
        web = url.lower().startswith(("http:", "https:", "//"))
        return external_problem(url, own_url) if web else "an unknown scheme"
    path, _, fragment = url.partition("#")
    path = unquote(path.split("?")[0])
    target = source if not path else Path(posixpath.normpath(posixpath.join(source.parent.as_posix(), path)))
    if site.resolve() not in (target.resolve(), *target.resolve().parents): return "outside the site"
    if target.is_dir(): target = target/"index.html"
    if not target.is_file(): return "no such file"
    if fragment and target.suffix == ".html" and fragment not in anchors(target):
        return f"no #{fragment} in {target.name}"
    return None


def broken_links(site: Path, own_url: str | None = None) -> list[str]:
    "Every broken link in a built site: pages, anchors, images, CSS and JS assets, the search index; `[]` if none."
    site, pages, problems = Path(site), {}, []
    def anchors(p: Path) -> set[str]:
        if p not in pages: pages[p] = parse_page(p)
        return pages[p].ids
    def check(url: str, source: Path, where: str):
        if (why := link_problem(url, source, site, anchors, own_url)): problems.append(f"{where}: {url} ({why})")
    for f in sorted(site.rglob("*.html")):
        page = pages.setdefault(f, parse_page(f))
        for url in page.links: check(url, f, f.relative_to(site).as_posix())
        for m in RAW_MD_LINK.finditer("".join(page.text)):
            problems.append(f"{f.relative_to(site).as_posix()}: {m.group()} (a Markdown link shown as text)")
    for f in sorted(site.rglob("*.css")):
        for m in CSS_URL.finditer(f.read_text(encoding="utf-8", errors="replace")):
            check(m.group(2) or m.group(4), f, f.relative_to(site).as_posix())
    if (site/"search.json").exists():
        for entry in json.loads((site/"search.json").read_text(encoding="utf-8")):
            check(entry["href"], site/"index.html", "search.json")
    return problems

# ---------------------------------------------------------------- notebooks' stored outputs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROOTS = r"(?:work|tmp|home|root|usr|opt|var|private|Users|mnt|srv|data)"
ABSOLUTE = re.compile(rf"(?<![\w.~:/-])/{ROOTS}/[^\s'\"<>]*|[^\s'\"<>]*site-packages/[^\s'\"<>]*")
STRAY = {  # output that says nothing to a reader of the chapter: library chatter and leftovers of the run
    "LOAD REPORT": re.compile(r"LOAD REPORT"),
    "a \"No log\" column": re.compile(r"No log"),
    "a warning with its source line": re.compile(r"^\S+:\d+: \w*Warning: ", re.M),
    "the model-conversion note": re.compile(r"Converting SentenceTransformer model"),
    "the model-card note": re.compile(r"does not match the number of train datasets"),
    "a kernel message": re.compile(r"\[IPKernelApp\]"),
    # tqdm drawn as text ("Computing similarity scores: 100%|####| 1/1 [00:00<...]"): a library's bar, or a bar
    # of the job's that a notebook shows as a widget, which `clean-outputs` strips
    "the trainer's raw log dictionary": re.compile(r"\{'(eval_|loss'|train_runtime'|grad_norm')"),
    "a progress bar printed as text": re.compile(r"\d+%\|[^|\n]*\|\s*\d+/\d+ \["),
}
WIDGET = "application/vnd.jupyter.widget-view+json"


def output_texts(out: dict) -> list[str]:
    "The text of one stored output: a stream, an error's traceback, or a display's text forms."
    if out.get("output_type") == "stream": return ["".join(out["text"])]
    if out.get("output_type") == "error": return ["\n".join(out.get("traceback", []))]
    return ["".join(v) if isinstance(v, list) else str(v) for k, v in out.get("data", {}).items()
            if k.startswith("text/") or k == "application/json"]


def output_problems(path: Path) -> list[str]:
    "What a notebook's stored outputs should not show: absolute paths, ANSI codes, library chatter, leftovers."
    found = []
    for cell in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]:
        where = f"{Path(path).name} cell {cell.get('id')}"
        for out in cell.get("outputs", []):
            if WIDGET in out.get("data", {}): found.append(f"{where}: a progress-bar widget")
            if out.get("output_type") == "error": found.append(f"{where}: an error ({out.get('ename')})")
            if out.get("output_type") == "stream" and not "".join(out["text"]).strip():
                found.append(f"{where}: an empty {out['name']} output")
            for text in output_texts(out):
                if (m := ABSOLUTE.search(text)): found.append(f"{where}: an absolute path ({m.group()[:80]})")
                if ANSI.search(text): found.append(f"{where}: ANSI escape codes")
                found += [f"{where}: {what}" for what, pat in STRAY.items() if pat.search(text)]
    return list(dict.fromkeys(found))


def strip_text(text: str, root: Path) -> str:
    "Take ANSI codes and absolute path prefixes (the checkout, site-packages, temporary folders) out of a text."
    text = ANSI.sub("", text).replace(f"{Path(root).resolve()}/", "")
    text = re.sub(r"[^\s'\"<>]*/site-packages/", "", text)
    return re.sub(r"(?<![\w.~:/-])/tmp/(?:tmp[\w-]+|ipykernel_\d+)/", "", text)


def clean_outputs(path: Path, root: Path) -> None:
    "Strip what can be stripped mechanically from stored outputs: widgets, kernel messages, ANSI, path prefixes."
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    nb["metadata"].pop("widgets", None)
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        outs = [o for o in cell["outputs"] if WIDGET not in o.get("data", {})]
        for o in outs:
            if o.get("output_type") == "stream":
                lines = "".join(o["text"]).splitlines(True)
                o["text"] = strip_text("".join(l for l in lines if not l.startswith("[IPKernelApp] WARNING")), root)
            for k, v in o.get("data", {}).items():
                if k.startswith("text/"): o["data"][k] = strip_text("".join(v) if isinstance(v, list) else v, root)
            if o.get("output_type") == "error": o["traceback"] = [strip_text(t, root) for t in o["traceback"]]
        cell["outputs"] = [o for o in outs if o.get("output_type") != "stream" or o["text"].strip()]
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    "build | check-links SITE | check-outputs NB... | clean-outputs NB... | readme [INDEX]"
    command, args = argv[0], argv[1:]
    if command == "build": problems = build(Path.cwd())
    elif command == "check-links": problems = broken_links(Path(args[0]), own_url=site_url())
    elif command == "check-outputs": problems = [p for a in args for p in output_problems(Path(a))]
    elif command == "readme":
        index = Path(args[0]) if args else Path("nbs/index.ipynb")
        (Path.cwd()/"README.md").write_text(readme(index), encoding="utf-8")
        return 0
    elif command == "clean-outputs":
        for a in args: clean_outputs(Path(a), Path.cwd())
        return 0
    else: raise SystemExit(main.__doc__)
    print("\n".join(problems) or "no problems", file=sys.stderr if problems else sys.stdout)
    if problems: print(f"{len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
