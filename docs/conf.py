"""Sphinx configuration of the sis_attr documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Add ``-D plot_gallery=0`` to skip running the examples, or set ``SIS_ATTR_DOCS_EXAMPLES`` to a regular expression
to run only the examples whose path matches it (``tests/test_docs_site.py`` runs two). Needs the ``docs`` extra
(``pip install -e ".[docs]"``).

The site works offline and loads nothing from elsewhere (``tests/test_docs_site.py`` checks it):

* math is rendered to MathML at build time (``latex2mathml``, see ``docs/sphinxext/sis_attr_docs.py``): no
  MathJax, no JavaScript, no fonts to fetch;
* sphinx-gallery's execution-times page is not written (it loads jQuery and DataTables from CDNs);
* there is no intersphinx: it would download the inventories of PyTorch, Captum and NumPy at build time. Their
  names that appear in the API pages (base classes such as ``torch.nn.Module`` or Captum's
  ``GradientAttribution``) are plain outbound links from a small table in ``sis_attr_docs.EXTERNAL_NAMES``.
"""

from __future__ import annotations

import os
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
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "matplotlib.sphinxext.plot_directive",  # figures drawn at build time (concepts: the score against removals)
    "sis_attr_docs",  # docs/sphinxext: API checks, MathML math, API sidebar, links in the changelog
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "sg_execution_times.rst",  # stale copies from builds that wrote them (see write_computation_times below)
    "auto_examples/sg_execution_times.rst",
]
default_role = "code"
pygments_style = "sphinx"
add_module_names = False
toc_object_entries = True  # "On this page" of an API page lists its methods and properties
toc_object_entries_show_parents = "hide"
html_math_renderer = "sis_attr_mathml"  # registered by sis_attr_docs: MathML at build time, no JavaScript

# -- autodoc / autosummary / numpydoc --------------------------------------------------------------------------
autosummary_generate = True
# Stubs of names that were renamed or removed would stay behind and fail the build ("not in any toctree"):
# start from a clean slate (the sphinx-gallery back-references in generated/backreferences are kept).
for _stub in (DOCS / "generated").glob("*.rst"):
    _stub.unlink()
for _stale in ("sg_execution_times.rst", "auto_examples/sg_execution_times.rst"):
    (DOCS / _stale).unlink(missing_ok=True)
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

# -- matplotlib plot directive ---------------------------------------------------------------------------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.autolayout": True}

# -- sphinx-gallery --------------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # only plot_*.py run; reproduce_*.py are shown, not executed
    "filename_pattern": os.environ.get("SIS_ATTR_DOCS_EXAMPLES", r"/plot_"),
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
    "write_computation_times": False,  # its page loads jQuery and DataTables from CDNs
}

# -- HTML ------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sis_attr {release}"
html_static_path = ["_static"]
html_css_files = ["sis_attr.css"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The user guide pages have no sub-pages, so the theme's "Section Navigation" would be an empty column: no left
# sidebar there. The API pages get a list of the public names grouped by module (_templates/api-sidebar.html,
# filled by sis_attr_docs).
html_sidebars = {
    "*": [],
    "auto_examples/*": [],
    "api": ["api-sidebar.html"],
    "generated/*": ["api-sidebar.html"],
}
