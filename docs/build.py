"""Build the mmnb documentation site without quarto and without executing a notebook: `python docs/build.py`.

Writes Sphinx sources into `_site/src` and the site into `_site/html` (both ignored by git), and exits nonzero on
any Sphinx warning. Pages:
- the index (README.md);
- one API page per library notebook: its prose and examples as written, each `#| export` cell replaced by the
  entries of the names it defines (`show_doc` of the installed `mmnb` for the signature, the docstring, a link to
  the lines in the repository);
- the tutorials (`nbs/tutorials/`) and experiment notebooks (`nbs/experiments/`), each with an "Open in Colab" badge;
- the params reference: every key of every schema file (the first file of a stack in `jobs.yaml`), its default and
  the comment that documents it; the build prints how many keys have no comment, and `python docs/build.py
  --check-params` counts them in every params file and exits 1 if there are any;
- the records gallery: every executed notebook under `runs/` with its outputs and plots, and a table of what
  each record is and recorded.
Every link and badge to the repository is made from `git_url` and `branch` in settings.ini.
"""
import argparse
import ast
import functools
import html
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import time
from configparser import ConfigParser
from pathlib import Path

import jupyter_server_mathjax
import nbformat
import yaml
from execnb.nbio import mk_cell
from nbdev.process import NBProcessor, Processor
from nbdev.processors import clean_magics, hide_, hide_line, populate_language, rm_export, rm_header_dash, strip_ansi
from nbdev.showdoc import show_doc

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_site"
NBS = ROOT / "nbs"


def settings() -> dict:
    "The `[DEFAULT]` section of settings.ini."
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return dict(cfg["DEFAULT"])


def repo_slug() -> str:
    "`owner/name` of the repository, from settings.ini's `git_url` (the one setting every link reads)."
    url = settings()["git_url"].rstrip("/").removesuffix(".git")
    m = re.match(r"https://github\.com/([^/]+/[^/]+)$", url)
    if not m: raise ValueError(f"settings.ini: git_url={url!r} is not https://github.com/<owner>/<name>")
    return m.group(1)


def source_url(rel: str, first: int | None = None, last: int | None = None) -> str:
    "Link to `rel` (a path in the repository) at lines `first`-`last` on the configured branch."
    lines = f"#L{first}-L{last}" if first else ""
    return f"https://github.com/{repo_slug()}/blob/{settings()['branch']}/{rel}{lines}"


def colab_url(rel: str) -> str:
    "Colab's address for the notebook at `rel` in the repository."
    return f"https://colab.research.google.com/github/{repo_slug()}/blob/{settings()['branch']}/{rel}"


BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<rect width="117" height="20" rx="3" fill="#555"/><rect x="0" width="117" height="20" rx="3" fill="#f9ab00"/>
<text x="58.5" y="14" fill="#000" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle">Open in Colab</text></svg>
"""


def badge_md(rel: str, depth: int) -> str:
    "Markdown of the Colab badge for the notebook at `rel`, on a page `depth` folders below the site root."
    img = "../" * depth + "_static/colab-badge.svg"
    return f'<a class="colab-badge" href="{colab_url(rel)}"><img src="{img}" alt="Open in Colab"></a>'


def _signature_block(obj, name: str) -> str:
    "The python code block of `show_doc(obj)`: the signature as nbdev renders it."
    try: md = show_doc(obj, name=name)._repr_markdown_()
    except OSError as e: raise RuntimeError(f"show_doc({name}) from {getattr(obj, '__module__', '?')}: {e}") from e
    m = re.search(r"```python\n.*?```", md, re.S)
    if not m: raise ValueError(f"show_doc({name}) gave no signature block")
    return m.group(0)


def api_entry(obj, name: str, level: int) -> str:
    "Markdown for one documented name: heading, signature, docstring, link to its source lines."
    target = inspect.unwrap(obj)
    lines, first = inspect.getsourcelines(target)
    rel = Path(inspect.getsourcefile(target)).resolve().relative_to(ROOT).as_posix()
    doc = inspect.getdoc(obj) or ""
    link = f'<a class="source-link" href="{source_url(rel, first, first + len(lines) - 1)}">source</a>'
    return f"{'#' * level} `{name}`\n\n{link}\n\n{_signature_block(obj, name)}\n\n{doc}\n"


def _defined_names(source: str) -> list[tuple[str, ast.AST]]:
    "Top-level functions and classes an export cell defines, in order."
    return [(n.name, n) for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _entries(mod, source: str, level: int) -> list[str]:
    "API entries for the public names `source` defines in `mod`, with the documented public methods of classes."
    public = set(getattr(mod, "__all__", []))
    out = []
    for name, node in _defined_names(source):
        if name not in public: continue
        obj = getattr(mod, name)
        out.append(api_entry(obj, name, level))
        if isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_") and ast.get_docstring(m):
                    out.append(api_entry(_member(obj, m.name), f"{name}.{m.name}", min(level + 1, 6)))
    return out


def _only_imports(source: str) -> bool:
    "Whether a cell holds nothing but import statements."
    return all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.parse(source).body)


def _member(cls, name: str):
    "The function behind `cls.name` (a property's getter, a static or class method's function)."
    m = inspect.getattr_static(cls, name)
    if isinstance(m, property): return m.fget
    return m.func if isinstance(m, functools.cached_property) else getattr(cls, name)


class ApiDocs(Processor):
    "nbdev processor: after each `#| export` cell, a markdown cell with the entries of the names it defines."
    def begin(self):
        module = next(c.directives_["default_exp"][0] for c in self.nb.cells if "default_exp" in c.directives_)
        mod = importlib.import_module(f"{settings()['lib_name']}.{module}")
        cells, level = [], 1
        for cell in self.nb.cells:
            cells.append(cell)
            if cell.cell_type == "markdown":
                heads = re.findall(r"^(#{1,6}) ", cell.source, re.M)
                if heads: level = len(heads[-1])
            elif "export" in cell.directives_:
                entries = _entries(mod, cell.source, min(level + 1, 6))
                if not entries:
                    if not _only_imports(cell.source): cell.directives_.pop("export")   # constants and tables stay visible as code
                    continue
                new = mk_cell("\n".join(entries), "markdown")
                new.directives_ = {}
                cells.append(new)
        self.nb.cells = cells


def _default_exp(path: Path) -> str | None:
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(cell["source"]), re.M)
        if cell["cell_type"] == "code" and m: return m.group(1)
    return None


def _with_badge(cells: list, rel: str, depth: int) -> list:
    "`cells` with the Colab badge right under the title cell."
    badge = nbformat.v4.new_markdown_cell(badge_md(rel, depth))
    return cells[:1] + [badge] + cells[1:]


def _save_nb(nb: dict, dest: Path):
    nb = nbformat.from_dict(nb)
    for c in nb.cells: c.pop("id", None)
    nb.nbformat_minor = 4
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))


def _plain(nb) -> dict:
    "A processed execnb notebook as a plain nbformat dict."
    cells = []
    for c in nb.cells:
        d = {"cell_type": c.cell_type, "metadata": {}, "source": c.source}
        if c.cell_type == "code": d.update(outputs=[dict(o) for o in c.get("outputs", [])], execution_count=None)
        cells.append(d)
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 4}


def api_page(path: Path, dest: Path):
    "Write the API page of the library notebook at `path` (nbdev's processors that execute nothing, plus `ApiDocs`)."
    procs = [populate_language, ApiDocs, hide_, rm_export, hide_line, clean_magics, rm_header_dash, strip_ansi]
    nb = _plain(NBProcessor(path, procs=procs, process=True).nb)
    nb["cells"] = _with_badge(nb["cells"], path.relative_to(ROOT).as_posix(), 1)
    _save_nb(nb, dest)


def notebook_page(path: Path, dest: Path, depth: int):
    "A tutorial or experiment notebook as written, directives removed, with its Colab badge."
    nb = json.loads(path.read_text(encoding="utf-8"))
    for c in nb["cells"]:
        src = "".join(c["source"])
        c["source"] = re.sub(r"^#\|.*\n?", "", src, flags=re.M) if c["cell_type"] == "code" else src
    nb["cells"] = _with_badge(nb["cells"], path.relative_to(ROOT).as_posix(), depth)
    _save_nb(nb, dest)


def _title(cells: list, fallback: str) -> str:
    for c in cells:
        m = re.search(r"^# (.+)$", "".join(c["source"]), re.M) if c["cell_type"] == "markdown" else None
        if m: return m.group(1).strip()
    return fallback


def _toctree(entries: list[str], caption: str | None = None, hidden: bool = False) -> str:
    opts = (f":caption: {caption}\n" if caption else "") + (":hidden:\n" if hidden else "") + ":maxdepth: 1\n"
    return "```{toctree}\n" + opts + "\n" + "\n".join(entries) + "\n```\n"


# ---- params reference

def schema_files() -> list[Path]:
    "The schema of every stack: the first params file of each run in jobs.yaml, in order of first use."
    jobs = yaml.safe_load((ROOT / "jobs.yaml").read_text(encoding="utf-8"))
    seen = {}
    for runs in jobs.values():
        for run in runs:
            if run.get("params"): seen.setdefault(run["params"][0], None)
    return [ROOT / p for p in seen]


_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\-](?:[A-Za-z0-9_.\-() ]*[A-Za-z0-9_.\-)])?):(\s.*|)$")  # a key may hold spaces: `codebook raw:`


def _comment_at(text: str) -> int | None:
    "Index of the `#` that starts a comment in `text` (outside quotes, at the start or after a blank); None if none."
    quote = None
    for i, ch in enumerate(text):
        if ch in "\"'" and quote in (None, ch): quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or text[i - 1] in " \t"): return i
    return None


def _split_comment(rest: str) -> tuple[str, str]:
    "(the YAML value, the comment after it outside quotes or '')."
    i = _comment_at(rest)
    return (rest.strip(), "") if i is None else (rest[:i].strip(), rest[i + 1:].strip())


def key_comments(path: Path) -> dict[str, str]:
    """Dotted key → its documenting comment: the one after its value (with the comment-only lines under it that start
    in the same column), else the comment lines right above it (not the file's header). The keys of a `{...}` flow mapping (a table's rows, e.g. the tour summary's headlines) share
    the comment of their line, else that of the nearest commented key above them in the tree."""
    out, stack, above, header = {}, [], [], True
    text = path.read_text(encoding="utf-8")
    tree = yaml.safe_load(text) or {}
    depth = 0                                    # open brackets of a flow collection that spans lines
    trailing = (None, [])                        # (column of the last key line's comment, the keys it documents)
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            col, keys = trailing
            if col is not None and line.index("#") == col:   # a comment-only line under a trailing comment continues it
                for k in keys: out[k] = f"{out[k]} {s.lstrip('#').strip()}"
            elif not header: above.append(s.lstrip("#").strip())
            continue
        header, trailing = False, (None, [])
        if depth:                                # a continuation line of a flow collection: its keys were read with it
            depth += _depth(_split_comment(line)[0]); continue
        m = _KEY.match(line)
        if not m or s.startswith("- "): above = []; continue
        indent, key = len(m.group(1)), m.group(2)
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        dotted, (value, comment) = ".".join(k for _, k in stack), _split_comment(m.group(3))
        out[dotted], depth = comment or " ".join(above), _depth(value)
        node, own = _node(tree, dotted), [dotted]
        if value.startswith("{") and isinstance(node, dict):
            doc = next((out[a] for a in _ancestors(dotted) if out.get(a)), "")
            out.update({f"{dotted}.{k}": doc for k in _flat(node)})
            if comment: own += [f"{dotted}.{k}" for k in _flat(node)]
        if comment: trailing = (m.start(3) + _comment_at(m.group(3)), own)
        above = []
    return out


def _depth(value: str) -> int:
    "Brackets `value` opens minus those it closes, outside quotes."
    depth, quote = 0, None
    for ch in value:
        if ch in "\"'" and quote in (None, ch): quote = None if quote else ch
        elif quote is None and ch in "{[": depth += 1
        elif quote is None and ch in "}]": depth -= 1
    return depth


def _node(tree, dotted: str):
    "The value at `dotted` in the loaded YAML `tree`; None where the path leaves nested mappings (a key inside a list)."
    for k in dotted.split("."):
        if not isinstance(tree, dict) or k not in tree: return None
        tree = tree[k]
    return tree


def _ancestors(dotted: str) -> list[str]:
    "`a.b.c`, `a.b`, `a`: the key and the keys above it, nearest first."
    parts = dotted.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def undocumented(path: Path) -> list[str]:
    "The keys of the params reference for `path` (its leaves) that have no comment."
    comments = key_comments(path)
    return [k for k in _flat(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if not comments.get(k)]


def _flat(tree, prefix="") -> dict:
    if isinstance(tree, dict) and tree:
        return {k: v for key, val in tree.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def _cell(text) -> str:
    "Text for a markdown table cell."
    return html.escape(str(text)).replace("|", "&#124;").replace("\n", " ")


def _code_cell(text) -> str:
    "A code span for a markdown table cell (GFM: an escaped pipe stays a pipe inside code)."
    return "`" + str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ") + "`"


def params_gaps(paths) -> tuple[int, dict[str, list[str]]]:
    "(how many reference keys `paths` hold, path → its keys without a comment for the files that have any)."
    total, gaps = 0, {}
    for p in paths:
        total += len(_flat(yaml.safe_load(p.read_text(encoding="utf-8")) or {}))
        if keys := undocumented(p): gaps[p.relative_to(ROOT).as_posix()] = keys
    return total, gaps


def gaps_report(total: int, gaps: dict[str, list[str]], what: str) -> str:
    "One line with the count of keys without a comment, then one line per file naming its first few."
    n = sum(len(v) for v in gaps.values())
    lines = [f"params: {n} of {total} {what} keys have no comment"]
    lines += [f"  {rel}: {len(keys)} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})" for rel, keys in gaps.items()]
    return "\n".join(lines)


def params_reference() -> str:
    "Markdown of every schema's keys: key, default, meaning."
    total, gaps = params_gaps(schema_files())
    missing = sum(len(v) for v in gaps.values())
    parts = ["# Params reference\n", "Every key of every params schema (the first file of a stack in `jobs.yaml`): its default "
             "and what it means, read from the file and its comments. Files stacked after a schema may change these "
             "keys only; an unknown key is an error that names the file and the closest valid key.\n"]
    if missing: parts.append(f"{missing} of these {total} keys have no comment in their file yet.\n")
    for path in schema_files():
        rel = path.relative_to(ROOT).as_posix()
        comments, values = key_comments(path), _flat(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        head = [l.lstrip("#").strip() for l in path.read_text(encoding="utf-8").splitlines()[:3] if l.startswith("#")]
        parts += [f"## `{rel}`\n", " ".join(head) + "\n", f'<a href="{source_url(rel)}">source</a>\n',
                  "| key | default | meaning |", "|---|---|---|"]
        for key, val in values.items():
            meaning = _cell(comments[key]) if comments.get(key) else "*(no comment in the file)*"
            parts.append(f"| {_code_cell(key)} | {_code_cell(json.dumps(val, default=str, ensure_ascii=False))} | {meaning} |")
        parts.append("")
    return "\n".join(parts)


# ---- records gallery

def _unshown_mimes() -> tuple[str, ...]:
    from mmnb.core import RECORD_MIME
    return (RECORD_MIME,                                   # mmnb.core.record's payload: its text/plain says the same
            "application/vnd.jupyter.widget-view+json")    # records keep no widget state: the text/plain shows instead


def _without(nb: dict, mimes) -> dict:
    "`nb` with the output data of `mimes` left out (each such output keeps its other representations)."
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            for m in mimes: o.get("data", {}).pop(m, None)
    return nb


def _with_heading(nb: dict, heading: str) -> dict:
    "`nb` whose first cell is the markdown `heading` (replacing a leading `# title` cell)."
    cells = nb["cells"]
    titled = cells and cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    first = {**cells[0], "source": heading + "".join(cells[0]["source"]).partition("\n")[2]} if titled else nbformat.v4.new_markdown_cell(heading)
    return {**nb, "cells": [first] + cells[1:] if titled else [first] + cells}


def _recorded(row: dict, n: int = 8) -> str:
    "The first `n` scalar values a record holds, as `key=value`, then how many more."
    keys = [k for k, v in row.items() if k not in ("job", "name", "path", "status", "duration_s", "started")
            and not k.startswith("param.") and v is not None and not (isinstance(v, float) and v != v)]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else (str(v) if isinstance(v, (int, str, bool)) else "[…]")
    shown = ", ".join(f"{k}={fmt(row[k])}" for k in keys[:n])
    return shown + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


def records_gallery(src: Path) -> list[str]:
    "Copy every record under runs/ into `src/records/` and write the gallery index; returns the pages' names."
    from mmnb.core import collect
    runs, mimes = ROOT / "runs", _unshown_mimes()
    rows, entries = [], []
    for row in collect(runs).to_dict("records"):
        rel = Path(row["path"]).resolve().relative_to(runs)
        nb = json.loads(Path(row["path"]).read_text(encoding="utf-8"))
        title = _title(nb["cells"], str(rel))
        _save_nb(_without(_with_heading(nb, f"# {row['job']}/{row['name']} · {rel.stem}: {title}\n"), mimes), src / "records" / rel)
        page = rel.with_suffix("").as_posix()
        entries.append(page)
        dur = f"{row['duration_s']:.0f} s" if isinstance(row["duration_s"], (int, float)) and row["duration_s"] == row["duration_s"] else ""
        rows.append(f"| [{_cell(row['job'])}/{_cell(row['name'])}]({page}) | {_cell(rel.stem)} | {_cell(row['status'])} | {dur} "
                    f"| {_cell(title)} | {_cell(_recorded(row))} |")
    notes = "".join(f"- `runs/{p.parent.name}/`: {_cell(_first_line(p))}\n" for p in sorted(runs.glob("*/README.md")))
    index = ("# Records gallery\n\nEvery executed notebook under `runs/`, rendered with the outputs and plots it had when it "
             "ran (nothing is executed to build this site). Each record's own cells say which model and data it used.\n\n"
             "| record | stamp | status | time | what it is | what it recorded |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
             + "\n\n## Notes kept with the runs\n\n" + notes + "\n" + _toctree(entries, hidden=True))
    (src / "records" / "index.md").write_text(index, encoding="utf-8")
    return entries


def _first_line(p: Path) -> str:
    lines = [l.strip("# ").strip() for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    return lines[0] if lines else ""


# ---- the site

def write_sources(src: Path):
    "Every page's source under `src`."
    if src.exists(): shutil.rmtree(src)
    (src / "api").mkdir(parents=True)
    api = []
    for p in sorted(NBS.glob("*.ipynb")):
        if p.name == "index.ipynb" or p.name.startswith("_") or not _default_exp(p): continue
        api_page(p, src / "api" / p.name); api.append(p.stem)
    (src / "api" / "index.md").write_text("# API\n\nOne page per library notebook.\n\n" + _toctree(api), encoding="utf-8")
    sections = [("api/index", None)]
    for folder, heading in (("tutorials", "Tutorials"), ("experiments", "Experiment notebooks")):
        nbs = sorted((NBS / folder).glob("*.ipynb"))
        if not nbs: continue
        for p in nbs: notebook_page(p, src / folder / p.name, 1)
        (src / folder / "index.md").write_text(f"# {heading}\n\n" + _toctree([p.stem for p in nbs]), encoding="utf-8")
        sections.append((f"{folder}/index", None))
    (src / "params.md").write_text(params_reference(), encoding="utf-8")
    records_gallery(src)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    toc = _toctree([s for s, _ in sections] + ["params", "records/index"], caption="Contents", hidden=True)
    (src / "index.md").write_text(readme + "\n" + toc, encoding="utf-8")


def write_static(static: Path):
    "MathJax (from the jupyter-server-mathjax wheel: no CDN) and the Colab badge."
    if static.exists(): shutil.rmtree(static)
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", static / "mathjax")
    (static / "colab-badge.svg").write_text(BADGE_SVG, encoding="utf-8")


def build(out: Path = SITE / "html", jobs: str = "1") -> int:
    "Write the sources and run Sphinx; warnings are errors. Returns Sphinx's exit status."
    t0 = time.time()
    write_static(SITE / "static")
    write_sources(SITE / "src")
    print(gaps_report(*params_gaps(schema_files()), "schema"))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", jobs, "-c", str(ROOT / "docs"),
           str(SITE / "src"), str(out)]
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    print(f"docs: {'built' if rc == 0 else 'FAILED'} {out} in {time.time() - t0:.0f} s")
    return rc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SITE / "html", help="output folder (default _site/html)")
    ap.add_argument("-j", "--jobs", default="1", help="Sphinx worker processes (1 was faster than 2 on 2 cores)")
    ap.add_argument("--check-params", action="store_true",
                    help="build nothing: count the params keys without a comment (schemas, then every file under params/); exit 1 if any")
    a = ap.parse_args()
    if a.check_params:
        schema, every = params_gaps(schema_files()), params_gaps(sorted((ROOT / "params").rglob("*.yaml")))
        print(gaps_report(*schema, "schema")); print(gaps_report(*every, "params/**.yaml"))
        sys.exit(1 if every[1] else 0)
    sys.exit(build(a.out, a.jobs))
