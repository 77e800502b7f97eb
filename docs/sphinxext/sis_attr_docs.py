"""Helpers of the sis_attr documentation build, importable without Sphinx (the tests use them too).

* :data:`PUBLIC_MODULES`: the modules whose ``__all__`` ``docs/api.rst`` must document.
* :func:`public_submodules`: every other public module of the package (found by walking it).
* :func:`documented_names` / :func:`api_sections`: the names listed in the ``autosummary`` blocks of
  ``docs/api.rst`` (and the section of the page each one is listed in).
* :func:`api_coverage_problems`: what ``api.rst`` misses, lists twice, or lists that is not public. Every object
  gets exactly one page: a name exported from two modules (``sis_attr.SISError`` is
  ``sis_attr.exceptions.SISError``) is listed once, and references to the other spelling are redirected to
  that page (:func:`alias_targets`). As a Sphinx extension (``setup``) the problems are warnings, so
  ``sphinx -W`` fails on them.
* :class:`ExampleOrder`: the order of the examples in the gallery.
* As a Sphinx extension it also renders math to MathML at build time (no JavaScript, nothing fetched), fills
  the API sidebar (``_templates/api-sidebar.html``), keeps the "previous/next" links of a page inside its part
  of the site, links the Python names of the changelog to their API pages, and turns the few PyTorch, Captum and
  NumPy names of the API pages into plain outbound links (:data:`EXTERNAL_NAMES`; no intersphinx, which would
  download inventories at build time).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

PUBLIC_MODULES: tuple[str, ...] = (
    "sis_attr",
    "sis_attr.functional",
    "sis_attr.testing",
    "sis_attr.datasets",
    "sis_attr.models",
    "sis_attr.training",
    "sis_attr.exceptions",
    "sis_attr.overinterpretation",
)
"""Modules whose ``__all__`` the API reference lists name by name."""

API_RST = Path(__file__).resolve().parents[1] / "api.rst"

EXAMPLE_ORDER: tuple[str, ...] = (
    "plot_sis_toy.py",
    "plot_cifar10_sis.py",
    "plot_batched_gradient_sis.py",
    "plot_overinterpretation_demo.py",
    "reproduce_table1_cifar10.py",
    "reproduce_figure6_sis_size.py",
)
"""Gallery order: first steps, then real images, scaling, the audit, and the heavier reproductions."""

_CURRENTMODULE = re.compile(r"^\.\.\s+(?:py:)?currentmodule::\s*(\S+)\s*$")
_AUTOSUMMARY = re.compile(r"^(\s*)\.\.\s+autosummary::\s*$")


def public_names(modules: tuple[str, ...] = PUBLIC_MODULES) -> dict[str, list[str]]:
    """``{module: sorted __all__}`` for the given modules (imports them)."""
    return {mod: sorted(getattr(importlib.import_module(mod), "__all__", [])) for mod in modules}


def public_submodules(package: str = "sis_attr") -> tuple[str, ...]:
    """Every module of ``package`` with no ``_``-prefixed part in its name, except :data:`PUBLIC_MODULES`."""
    pkg = importlib.import_module(package)
    found = [
        info.name
        for info in pkgutil.walk_packages(pkg.__path__, package + ".")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return tuple(sorted(name for name in found if name not in PUBLIC_MODULES))


def resolve(name: str) -> Any:
    """Import ``a.b.c`` as autosummary does: attribute ``c`` of module ``a.b`` first, then module ``a.b.c``.

    (An attribute wins over a submodule of the same name.)
    """
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except (ImportError, AttributeError):
            continue
        return obj
    return importlib.import_module(name)


def api_sections(api_rst: Path = API_RST) -> list[tuple[str, list[str]]]:
    """``(section title, [fully qualified names])`` for each top-level section of ``api_rst``, in page order.

    The sections are the headings underlined with ``-``; the names are the entries of their ``autosummary``
    blocks, resolved against the latest ``.. currentmodule::`` (a leading ``~`` is ignored and an entry that
    already starts with ``sis_attr`` is taken as fully qualified). Names listed before the first section are
    grouped under ``""``; sections without names are left out.
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    current = ""
    in_block = False
    block_indent = -1
    lines = [raw.rstrip() for raw in api_rst.read_text(encoding="utf-8").splitlines()]
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt and set(nxt) == {"-"} and len(nxt) >= len(line.strip()) and not line.startswith(" "):
            sections.append((line.strip().replace("``", ""), []))
            in_block = False
            continue
        m = _CURRENTMODULE.match(line.strip())
        if m:
            current = m.group(1)
            in_block = False
            continue
        m = _AUTOSUMMARY.match(line)
        if m:
            in_block = True
            block_indent = len(m.group(1))
            continue
        if not in_block or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= block_indent:  # dedent: the block ended
            in_block = False
            continue
        entry = line.strip()
        if entry.startswith(":"):  # an option such as :toctree: or :nosignatures:
            continue
        entry = entry.lstrip("~")
        sections[-1][1].append(entry if entry.startswith("sis_attr") or not current else f"{current}.{entry}")
    return [(title, names) for title, names in sections if names]


def documented_names(api_rst: Path = API_RST) -> set[str]:
    """Fully qualified names listed in the ``autosummary`` blocks of ``api_rst`` (see :func:`api_sections`)."""
    return {name for _, names in api_sections(api_rst) for name in names}


_SCALARS = (int, float, complex, str, bytes, bool, type(None))


def _identity(name: str, obj: Any) -> tuple[Any, ...]:
    """What makes two public names the same object: ``id`` for objects, the short name and value for scalars.

    (Equal small integers or strings share an ``id`` by coincidence: ``PAPER_EPOCHS`` is not ``CONTENT_NOISE``.)
    """
    if isinstance(obj, _SCALARS):
        return ("scalar", name.rpartition(".")[2], repr(obj))
    return ("object", id(obj))


def _all_public_names() -> list[str]:
    """Every ``module.name`` of the ``__all__`` of :data:`PUBLIC_MODULES` and :func:`public_submodules`."""
    found = public_names()
    found.update(public_names(public_submodules()))
    return [f"{module}.{name}" for module, names in found.items() for name in names]


def alias_targets(api_rst: Path = API_RST) -> dict[str, str]:
    """``{public name: the documented name of the same object}`` for the public names without a page of their own.

    For instance ``sis_attr.SISError`` -> ``sis_attr.exceptions.SISError``. References to the former (``:class:``
    roles in docstrings and pages) are resolved to the latter's page by the extension.
    """
    pages: dict[tuple[Any, ...], str] = {}
    for name in sorted(documented_names(api_rst)):
        try:
            pages.setdefault(_identity(name, resolve(name)), name)
        except (ImportError, AttributeError):
            continue
    aliases: dict[str, str] = {}
    for name in _all_public_names():
        module, _, attr = name.rpartition(".")
        try:
            target = pages.get(_identity(name, getattr(importlib.import_module(module), attr)))
        except (ImportError, AttributeError):
            continue
        if target is not None and target != name:
            aliases[name] = target
    return aliases


def api_coverage_problems(api_rst: Path = API_RST) -> list[str]:
    """Human-readable problems of ``api_rst``; empty when it documents exactly the public API, once.

    * every listed name must import and be in the ``__all__`` of the module it is listed under;
    * every name in the ``__all__`` of a public module (:data:`PUBLIC_MODULES` and :func:`public_submodules`)
      must be documented: listed itself, or the same object listed under another public name;
    * no object may be listed twice (one page per object: list it under one module, and mention the other
      spelling in prose).
    """
    where = api_rst.name
    listed = documented_names(api_rst)
    problems: list[str] = []
    pages: dict[tuple[Any, ...], list[str]] = {}
    for name in sorted(listed):
        module, _, attr = name.rpartition(".")
        try:
            obj = resolve(name)
            exported = attr in getattr(importlib.import_module(module), "__all__", ())
        except (ImportError, AttributeError) as err:
            problems.append(f"{name} is listed in {where} but cannot be imported ({err}): remove or fix it.")
            continue
        pages.setdefault(_identity(name, obj), []).append(name)
        if not exported:
            problems.append(f"{name} is listed in {where} but is not in the __all__ of {module}: remove or export it.")
    problems += [
        f"{' and '.join(names)} are the same object, listed {len(names)} times in {where}: keep one page (under "
        "the module users import it from) and mention the other spelling in prose."
        for names in pages.values()
        if len(names) > 1
    ]
    for name in _all_public_names():
        module, _, attr = name.rpartition(".")
        if name in listed:
            continue
        if _identity(name, getattr(importlib.import_module(module), attr)) not in pages:
            problems.append(
                f"{name} is in the __all__ of {module} but {where} documents it nowhere: add it to the autosummary "
                f"block of {module}, or of a public module that re-exports it."
            )
    return problems


class ExampleOrder:
    """sphinx-gallery ``within_subsection_order``: :data:`EXAMPLE_ORDER` first, any other file after, by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        rank = EXAMPLE_ORDER.index(name) if name in EXAMPLE_ORDER else len(EXAMPLE_ORDER)
        return rank, name

    def __repr__(self) -> str:  # sphinx-gallery uses it to decide whether the configuration changed
        return f"<{type(self).__name__}>"


def _check_api_coverage(app: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for problem in api_coverage_problems(Path(app.srcdir) / "api.rst"):
        logger.warning(problem)


def _drop_type_docstrings(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Constants without a docstring of their own would show the docstring of their type (``str``, ``int``)."""
    if what not in ("data", "attribute") or obj is None or not lines:
        return
    from sphinx.util.docstrings import prepare_docstring

    type_doc = getattr(type(obj), "__doc__", None)
    if isinstance(type_doc, str) and [ln for ln in lines if ln] == [ln for ln in prepare_docstring(type_doc) if ln]:
        lines.clear()


_MODULE_PLUMBING = frozenset({"forward", "extra_repr"})


def _keep_public_routines(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Document public methods and properties even without a docstring (``to_dict``, ``n_images``...).

    Attributes without a docstring (dataclass fields, already described in the class's "Attributes" section)
    stay out, and so do ``nn.Module.forward``/``extra_repr``.
    """
    if not skip or what != "class" or name.startswith("_") or name in _MODULE_PLUMBING:
        return None
    if inspect.isroutine(obj) or isinstance(obj, (property, classmethod, staticmethod)):
        return False
    return None


# ------------------------------------------------------------------------------------------------ math
def mathml(latex: str, display: bool = False) -> str:
    """LaTeX to MathML (rendered by every current browser without JavaScript or web fonts)."""
    from latex2mathml.converter import convert

    return convert(latex.strip(), display="block" if display else "inline")


def _visit_math(self: Any, node: Any) -> None:
    from docutils import nodes

    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(mathml(node.astext()) + "</span>")
    raise nodes.SkipNode


def _visit_displaymath(self: Any, node: Any) -> None:
    from docutils import nodes
    from sphinx.util.math import get_node_equation_number

    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node.get("number"):
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, "Link to this equation")
        self.body.append("</span>")
    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    self.body.append("".join(mathml(part, display=True) for part in parts) + "</div>\n")
    raise nodes.SkipNode


# ------------------------------------------------------------------------------------------------ references
EXTERNAL_NAMES: dict[str, str] = {
    "torch.Tensor": "https://pytorch.org/docs/stable/tensors.html",
    "torch.nn.Module": "https://pytorch.org/docs/stable/generated/torch.nn.Module.html",
    "torch.nn.modules.module.Module": "https://pytorch.org/docs/stable/generated/torch.nn.Module.html",
    "torch.utils.data.Dataset": "https://pytorch.org/docs/stable/data.html#torch.utils.data.Dataset",
    "torch.utils.data.dataset.Dataset": "https://pytorch.org/docs/stable/data.html#torch.utils.data.Dataset",
    "torch.Generator": "https://pytorch.org/docs/stable/generated/torch.Generator.html",
    "captum.attr.Attribution": "https://captum.ai/api/base_classes.html",
    "captum.attr._utils.attribution.Attribution": "https://captum.ai/api/base_classes.html",
    "captum.attr.GradientAttribution": "https://captum.ai/api/base_classes.html",
    "captum.attr._utils.attribution.GradientAttribution": "https://captum.ai/api/base_classes.html",
    "captum.attr.PerturbationAttribution": "https://captum.ai/api/base_classes.html",
    "captum.attr._utils.attribution.PerturbationAttribution": "https://captum.ai/api/base_classes.html",
    "captum.attr.NoiseTunnel": "https://captum.ai/api/noise_tunnel.html",
    "numpy.ndarray": "https://numpy.org/doc/stable/reference/generated/numpy.ndarray.html",
}
"""Names of PyTorch, Captum and NumPy that the API pages mention, and the page of each in its project's docs.

Outbound links only (nothing is loaded from them); intersphinx would download the projects' inventories at
build time, which an offline build cannot do.
"""


def _alias_map(app: Any) -> dict[str, str]:
    cached: dict[str, str] | None = getattr(app, "_sis_attr_aliases", None)
    if cached is None:
        cached = alias_targets(Path(app.srcdir) / "api.rst")
        app._sis_attr_aliases = cached
    return cached


def _resolve_alias_or_external(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: another spelling of a documented name, or a PyTorch/Captum/NumPy name."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    canonical = _alias_map(app).get(target)
    if canonical is not None:
        py = env.get_domain("py")
        return py.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)
    url = EXTERNAL_NAMES.get(target)
    if url is not None:
        from docutils import nodes

        ref = nodes.reference("", "", internal=False, refuri=url, reftitle=f"{target} (external documentation)")
        ref += contnode
        return ref
    return None


_CALL = re.compile(r"\(.*\)$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _changelog_target(text: str, objects: dict[str, Any], short: dict[str, str], aliases: dict[str, str]) -> str | None:
    """The documented name an inline literal of the changelog names, if any (``find_sis``, ``AuditReport.save``)."""
    name = _CALL.sub("", text.strip())
    if not _DOTTED.match(name):
        return None
    for candidate in (name, f"sis_attr.{name}"):
        candidate = aliases.get(candidate, candidate)
        if candidate in objects:
            return candidate
    head, _, rest = name.partition(".")
    if head in short:
        candidate = short[head] + (f".{rest}" if rest else "")
        if candidate in objects:
            return candidate
    return None


def _link_changelog_names(app: Any, doctree: Any, docname: str) -> None:
    """``doctree-resolved``: every inline literal of the changelog that names a public object links to its page."""
    if docname != "changelog":
        return
    from docutils import nodes

    objects = app.env.get_domain("py").objects
    counts: dict[str, int] = {}
    for full in objects:
        last = full.rpartition(".")[2]
        counts[last] = counts.get(last, 0) + 1
    short = {full.rpartition(".")[2]: full for full in objects if counts[full.rpartition(".")[2]] == 1}
    aliases = _alias_map(app)
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, nodes.reference):
            continue
        target = _changelog_target(literal.astext(), objects, short, aliases)
        if target is None:
            continue
        entry = objects[target]
        uri = app.builder.get_relative_uri(docname, entry.docname) + "#" + entry.node_id
        ref = nodes.reference("", "", internal=True, refuri=uri, reftitle=target)
        literal.replace_self(ref)
        ref += literal


# ------------------------------------------------------------------------------------------------ HTML pages
def _api_groups(app: Any, pagename: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for title, names in api_sections(Path(app.srcdir) / "api.rst"):
        items = [
            {
                "docname": f"generated/{name}",
                "label": name.rpartition(".")[2],
                "title": name,
                "current": pagename == f"generated/{name}",
            }
            for name in names
        ]
        module, _, about = title.partition(":")
        groups.append(
            {
                "title": module.strip() or "sis_attr",
                "about": about.strip(),
                "items": items,
                "current": any(item["current"] for item in items),
            }
        )
    return groups


def _page_context(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """``html-page-context``: the API sidebar's groups; previous/next links that stay in the page's part."""
    if pagename == "api" or pagename.startswith("generated/"):
        context["sis_api_groups"] = _api_groups(app, pagename)
    for key in ("prev", "next"):
        link = context.get(key)
        if link and not _stays_in_part(pagename, str(link.get("link", ""))):
            context[key] = None


def _stays_in_part(pagename: str, href: str) -> bool:
    """Whether a previous/next link from ``pagename`` stays in its part of the site.

    An API page's neighbours are API pages or the API index; a guide page's are guide pages (the changelog's
    "previous" would otherwise be the last API page).
    """
    if pagename.startswith("generated/"):
        return ("/" not in href and not href.startswith("..")) or href.split("#")[0] == "../api.html"
    return "generated/" not in href


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: API checks, MathML math, the API sidebar, changelog links and external names."""
    app.add_html_math_renderer("sis_attr_mathml", (_visit_math, None), (_visit_displaymath, None))
    app.connect("builder-inited", _check_api_coverage)
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=100)  # before numpydoc
    app.connect("autodoc-skip-member", _keep_public_routines)
    app.connect("missing-reference", _resolve_alias_or_external)
    app.connect("doctree-resolved", _link_changelog_names)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
