"""Helpers of the sis_attr documentation build, importable without Sphinx (the tests use them too).

* :data:`PUBLIC_MODULES`: the modules whose ``__all__`` ``docs/api.rst`` must list name by name.
* :func:`public_submodules`: every other public module of the package (found by walking it); each name in
  their ``__all__`` must be documented too, under that module or under any public name of the same object
  (for instance ``sis_attr.exact_sis.SufficientInputSubsets`` is ``sis_attr.SufficientInputSubsets``).
* :func:`documented_names`: the names listed in the ``autosummary`` blocks of ``docs/api.rst``.
* :func:`api_coverage_problems`: what ``api.rst`` misses, and what it lists that is not public. As a Sphinx
  extension (``setup``) the problems are reported as warnings, so ``sphinx -W`` fails on them.
* :class:`ExampleOrder`: the order of the examples in the gallery.
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


def documented_names(api_rst: Path = API_RST) -> set[str]:
    """Fully qualified names listed in the ``autosummary`` blocks of ``api_rst``.

    Entries are resolved against the latest ``.. currentmodule::``; a leading ``~`` is ignored and an entry
    that already starts with ``sis_attr`` is taken as fully qualified.
    """
    found: set[str] = set()
    current = ""
    in_block = False
    block_indent = -1
    for raw in api_rst.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
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
        found.add(entry if entry.startswith("sis_attr") or not current else f"{current}.{entry}")
    return found


def api_coverage_problems(api_rst: Path = API_RST) -> list[str]:
    """Human-readable problems of ``api_rst``; empty when it documents exactly the public API.

    * every name in the ``__all__`` of a module of :data:`PUBLIC_MODULES` must be listed under that module;
    * every name in the ``__all__`` of another public module (:func:`public_submodules`) must be listed, under
      that module or under any other name of the same object;
    * every listed name must import and be in the ``__all__`` of the module it is listed under.
    """
    where = api_rst.name
    listed = documented_names(api_rst)
    problems: list[str] = []
    listed_ids: set[int] = set()
    for name in sorted(listed):
        module, _, attr = name.rpartition(".")
        try:
            listed_ids.add(id(resolve(name)))
            exported = attr in getattr(importlib.import_module(module), "__all__", ())
        except (ImportError, AttributeError) as err:
            problems.append(f"{name} is listed in {where} but cannot be imported ({err}): remove or fix it.")
            continue
        if not exported:
            problems.append(f"{name} is listed in {where} but is not in the __all__ of {module}: remove or export it.")
    for module, names in public_names().items():
        problems += [
            f"{module}.{name} is in the __all__ of {module} but not listed in {where}: add it to the autosummary "
            "block of its module."
            for name in names
            if f"{module}.{name}" not in listed
        ]
    for module, names in public_names(public_submodules()).items():
        mod = importlib.import_module(module)
        problems += [
            f"{module}.{name} is in the __all__ of {module} but {where} documents it nowhere: list it under "
            f"{module} or under a public module that re-exports it."
            for name in names
            if f"{module}.{name}" not in listed and id(getattr(mod, name)) not in listed_ids
        ]
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


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: warn (an error under ``-W``) when ``api.rst`` and the modules' ``__all__`` disagree."""
    app.connect("builder-inited", _check_api_coverage)
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=100)  # before numpydoc
    app.connect("autodoc-skip-member", _keep_public_routines)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
