"""Sphinx configuration: MyST markdown, furo, autodoc with Google-style docstrings."""

from importlib.metadata import version as _version

project = "wmspanel-async"
author = "wmspanel-async developers"
copyright = "2026, wmspanel-async developers"
release = _version("wmspanel-async")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Without the network the inventories cannot be fetched; links then stay plain text.
intersphinx_mapping: dict[str, tuple[str, None]] = {}

html_theme = "furo"
html_title = "wmspanel-async"
