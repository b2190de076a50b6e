"""The Colab setup cell of every experiment and tutorial notebook: write it, check it, test its logic.

    python .ci/colab.py             # insert or update the cell in nbs/experiments/*.ipynb and nbs/tutorials/*.ipynb
    python .ci/colab.py --check     # exit 1 naming each notebook whose cell is missing or differs from what this writes
    python .ci/colab.py --selftest  # run the cell in a fresh virtual environment and in this one (see `selftest`)

The cell is one code cell whose first line is `MARK`. Where mmnb cannot be imported (a fresh Colab runtime) it clones
the repository (`git_url` and `branch` in settings.ini, the one setting every link and badge reads), installs it
with pip, puts it on this kernel's path and moves into the notebook's folder inside the clone, so that the
notebook's relative `params_files` resolve; where mmnb is installed it does nothing. Writing touches only that cell:
an existing marked cell is updated in place, otherwise the cell goes right before the first code cell (after the
title); running the tool twice changes nothing the second time.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("nbs/experiments", "nbs/tutorials")
MARK = "# mmnb Colab setup: written by .ci/colab.py from settings.ini (edit there, not here)."

CELL = '''{mark}
# Where mmnb is not installed (a fresh Colab runtime): clone the repository, install it, move to this notebook's
# folder in the clone. Where mmnb is installed: nothing.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("mmnb") is None:
    _repo = os.path.join("/content" if os.path.isdir("/content") else os.path.expanduser("~"), "{name}")
    if not os.path.isdir(_repo):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", {branch}, {url}, _repo], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", _repo], check=True)
    sys.path.insert(0, _repo)
    os.chdir(os.path.join(_repo, {folder}))'''


def settings() -> dict:
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return dict(cfg["DEFAULT"])


def setup_source(folder: str, url: str | None = None, branch: str | None = None) -> str:
    "The setup cell for a notebook in `folder` (relative to the repository root); url and branch from settings.ini by default."
    s = settings()
    url = url or s["git_url"]
    return CELL.format(mark=MARK, url=json.dumps(url), branch=json.dumps(branch or s["branch"]), folder=json.dumps(folder),
                       name=url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1])


def notebooks() -> list[Path]:
    return sorted(p for f in FOLDERS for p in (ROOT / f).glob("*.ipynb"))


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def with_setup_cell(nb: dict, source: str) -> dict:
    "`nb` with its marked setup cell holding `source`: updated in place, or inserted before the first code cell."
    marked = [c for c in nb["cells"] if c["cell_type"] == "code" and _src(c).startswith(MARK)]
    if len(marked) > 1: raise ValueError(f"{len(marked)} Colab setup cells; expected at most one")
    if marked:
        marked[0]["source"] = source.splitlines(keepends=True)
        return nb
    first_code = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), len(nb["cells"]))
    ids = {c.get("id") for c in nb["cells"]}
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source.splitlines(keepends=True)}
    if nb.get("nbformat", 4) > 4 or nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = next(i for i in ("colab-setup", *(f"colab-setup-{n}" for n in range(1, 100))) if i not in ids)
    nb["cells"].insert(first_code, cell)
    return nb


def _dump(nb: dict) -> str:
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"   # as nbdev_clean writes


def write(paths) -> list[Path]:
    "Insert or update the cell in each notebook; returns those whose file changed (each written atomically)."
    changed = []
    for p in paths:
        text = p.read_text(encoding="utf-8")
        folder = p.parent.relative_to(ROOT).as_posix()
        new = _dump(with_setup_cell(json.loads(text), setup_source(folder)))
        if _dump(json.loads(text)) != new:
            tmp = p.with_name(p.name + ".colab.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(p)
            changed.append(p)
    return changed


def stale(paths) -> list[str]:
    "Notebooks whose setup cell is missing or not what `write` would put there, each with why."
    out = []
    for p in paths:
        nb = json.loads(p.read_text(encoding="utf-8"))
        cells = [c for c in nb["cells"] if c["cell_type"] == "code" and _src(c).startswith(MARK)]
        want = setup_source(p.parent.relative_to(ROOT).as_posix())
        if not cells: out.append(f"{p.relative_to(ROOT)}: no Colab setup cell")
        elif len(cells) > 1: out.append(f"{p.relative_to(ROOT)}: {len(cells)} Colab setup cells")
        elif _src(cells[0]) != want: out.append(f"{p.relative_to(ROOT)}: the Colab setup cell differs from settings.ini's")
        elif next(c for c in nb["cells"] if c["cell_type"] == "code") is not cells[0]:
            out.append(f"{p.relative_to(ROOT)}: the Colab setup cell is not the first code cell")
    return out


def _run_cell(python: str, source: str, cwd: Path, home: Path) -> dict:
    "Run `source` with `python` in `cwd`; report whether mmnb imports afterwards, from where, and the final cwd."
    probe = source + "\nimport json, os, importlib.util\nspec = importlib.util.find_spec('mmnb')\n" \
            "print(json.dumps({'cwd': os.getcwd(), 'mmnb': spec.origin if spec else None}))"
    env = {**os.environ, "HOME": str(home), "PIP_NO_DEPS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None); env.pop("PYTHONPATH", None)
    r = subprocess.run([python, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode: raise RuntimeError(f"the setup cell failed under {python}:\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def selftest() -> list[str]:
    """Run the cell's logic, unchanged but for the repository URL (a file:// repository holding this checkout's HEAD):
    1. in a fresh virtual environment without mmnb it clones, installs (`PIP_NO_DEPS=1`: the test checks the
       cell, not mmnb's dependencies), imports mmnb from the clone and ends in the notebook's folder of the clone;
    2. run again in that environment it finds mmnb installed and does nothing (no second clone, cwd unchanged);
    3. in this environment (mmnb installed) it does nothing.
    Returns the failures."""
    folder, fails = "nbs/experiments", []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        origin, branch = tmp / "origin", settings()["branch"]   # this checkout's HEAD as settings.ini's branch (CI may be detached)
        subprocess.run(["git", "init", "-q", str(origin)], check=True)
        subprocess.run(["git", "-C", str(origin), "fetch", "-q", str(ROOT), f"HEAD:refs/heads/{branch}"], check=True)
        src = setup_source(folder, url=f"file://{origin}", branch=branch)
        home, env_dir, start = tmp / "home", tmp / "venv", tmp / "start"
        home.mkdir(); start.mkdir()
        venv.EnvBuilder(with_pip=True).create(env_dir)
        py = str(env_dir / "bin" / "python")
        clone = home / origin.name
        first = _run_cell(py, src, start, home)
        if first["cwd"] != str(clone / folder): fails.append(f"fresh env: ended in {first['cwd']}, not {clone / folder}")
        if not (first["mmnb"] or "").startswith(str(clone)): fails.append(f"fresh env: mmnb from {first['mmnb']}, not the clone {clone}")
        listed = subprocess.run([py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True).stdout
        if "mmnb" not in {d["name"] for d in json.loads(listed)}: fails.append("fresh env: pip does not list mmnb after the cell")
        (clone / "marker").write_text("the clone the first run made")
        second = _run_cell(py, src, start, home)
        if second["cwd"] != str(start): fails.append(f"fresh env, second run: moved to {second['cwd']}")
        if not (clone / "marker").exists(): fails.append("fresh env, second run: the clone was replaced")
        here = _run_cell(sys.executable, src, start, home / "unused")
        if here["cwd"] != str(start) or (home / "unused").exists(): fails.append("this env (mmnb installed): the cell did something")
    return fails


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any notebook's setup cell is missing or stale")
    ap.add_argument("--selftest", action="store_true", help="test the cell's logic in a fresh virtual environment")
    ap.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every notebook in nbs/experiments and nbs/tutorials)")
    a = ap.parse_args()
    paths = [p.resolve() for p in a.paths] or notebooks()
    if a.selftest:
        fails = selftest()
        print("\n".join(fails) or "colab setup cell: clones + installs + moves in a fresh env; does nothing where mmnb is installed")
        print(f"colab selftest: {3 - len({f.split(':')[0] for f in fails})} passed, {len({f.split(':')[0] for f in fails})} failed")
        sys.exit(1 if fails else 0)
    if a.check:
        bad = stale(paths)
        print("\n".join(bad) or f"colab: {len(paths)} notebooks have the current setup cell")
        sys.exit(1 if bad else 0)
    for p in write(paths): print(f"colab: wrote the setup cell in {p.relative_to(ROOT)}")
