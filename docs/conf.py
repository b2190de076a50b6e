"""Sphinx configuration of the mmnb site: furo theme, notebooks through myst-nb without executing them.

`docs/build.py` writes the sources (API pages from `nbs/`, the params reference, the records gallery) into
`_site/src` and runs Sphinx with this folder as its configuration directory; nothing here reaches the network.
"""
from configparser import ConfigParser
from pathlib import Path

root = Path(__file__).resolve().parent.parent
cfg = ConfigParser(delimiters=["="])
cfg.read(root / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

project = cfg["title"]
author = cfg["author"]
copyright = cfg["copyright"]
release = cfg["version"]

extensions = ["myst_nb", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_dmath_double_inline = True   # $$...$$ inside a paragraph, as the notebooks write display math
myst_heading_anchors = 3
myst_update_mathjax = False   # its config is for MathJax 3; the site loads MathJax 2 (below)
nb_execution_mode = "off"          # records keep their outputs; library notebooks are shown as written
nb_merge_streams = True
nb_output_stderr = "remove"        # progress bars and warnings on stderr are noise on a page
exclude_patterns = ["**.ipynb_checkpoints"]

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path = [str(root / "_site" / "static")]   # written by docs/build.py (MathJax, the Colab badge)
html_show_sourcelink = False
html_copy_source = False

# MathJax 2 from the jupyter-server-mathjax wheel, copied next to the pages: no CDN.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"   # the combined config the wheel ships
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
                   "showMathMenu": False,   # the wheel ships only the STIX-Web fonts, as Jupyter's own MathJax does
                   "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web", "imageFont": None,
                                # its blank measuring font would be fetched from about:blank, an error in the console
                                "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank')"}}},
                   # the preview pass and the hidden assistive MathML ask for TeX fonts the wheel leaves out
                   "fast-preview": {"disabled": True}, "AssistiveMML": {"disabled": True}, "menuSettings": {"assistiveMML": False}}
