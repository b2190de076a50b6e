"""Write README.md from nbs/index.ipynb without quarto (which cannot be installed on the build machines).

Markdown cells are copied as they are; code cells become ```python blocks followed by their text outputs.
`python .ci/readme.py --check` exits 1 when README.md is out of date. Where quarto is installed, nbdev_readme
produces the same content through quarto.
"""
import json
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent


def readme_text(nb_path: Path) -> str:
    cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
    parts = []
    for c in cells:
        src = "".join(c["source"]).strip()
        if c["cell_type"] == "markdown":
            parts.append(src)
        elif src and not src.startswith("#| hide"):
            parts.append(f"```python\n{src}\n```")
            parts += [f"```\n{''.join(o['text']).rstrip()}\n```" for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text, readme = readme_text(root / "nbs" / "index.ipynb"), root / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python .ci/readme.py`")
    else:
        tmp = readme.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(readme)
