"""Sphinx configuration of the sis_attr documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Add ``-D plot_gallery=0`` to skip running the examples. Needs the ``docs`` extra (``pip install -e ".[docs]"``).
No extension reaches the internet (no intersphinx).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "sphinxext"))
sys.path.insert(0, str(ROOT))  # document the checkout, not some other installed copy

import sis_attr  # noqa: E402

# -- Project ---------------------------------------------------------------------------------------------------
project = "sis_attr"
author = "sis_attr developers"
copyright = "sis_attr developers"
release = sis_attr.__version__
version = ".".join(release.split(".")[:2])

# -- General ---------------------------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "sis_attr_docs",  # docs/sphinxext: api.rst must list every name of every public __all__
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "code"
pygments_style = "sphinx"
add_module_names = False
toc_object_entries = False

# -- autodoc / autosummary / numpydoc --------------------------------------------------------------------------
autosummary_generate = True
# Stubs of names that were renamed or removed would stay behind and fail the build ("not in any toctree"):
# start from a clean slate (the sphinx-gallery back-references in generated/backreferences are kept).
for _stub in (DOCS / "generated").glob("*.rst"):
    _stub.unlink()
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_inherit_docstrings = False  # nn.Module and Captum docstrings are not ours
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- MyST (CHANGELOG.md) ---------------------------------------------------------------------------------------
myst_heading_anchors = 3

# -- sphinx-gallery --------------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # only plot_*.py run; reproduce_*.py are shown, not executed
    "within_subsection_order": "sis_attr_docs.ExampleOrder",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 1,
    "show_memory": False,
    "capture_repr": (),
    "backreferences_dir": "generated/backreferences",  # "Examples using X" on every API page
    "doc_module": ("sis_attr",),
    "abort_on_example_error": False,  # run all, then fail the build listing every broken example
    "only_warn_on_example_error": False,
}

# -- HTML ------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sis_attr {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": []}
