"""The built documentation as a reader sees it: strict build, links, nothing loaded from elsewhere, layout.

One strict build (``sphinx -W``) of a copy of ``docs/`` and ``examples/`` serves every test here. Two examples
run during it (``SIS_ATTR_DOCS_EXAMPLES``: the toy SIS and the shortcut demo, so their "Out:" blocks exist);
``tests/test_docs_examples.py`` runs all of them on their own.

* Every internal link and anchor of every page resolves (``href``/``src`` to a file that exists, ``#id`` to an
  element of that page).
* No page loads anything from another server: no ``http(s)://`` or ``//`` in the ``src`` of scripts, images,
  frames or media, in the ``href`` of stylesheets, icons or preloads, nor in a ``url()`` or ``@import`` of a
  stylesheet. (Links a reader may follow, ``<a href="https://...">``, are fine.) Math is MathML, rendered at
  build time.
* In headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium from the ``dev``
  extra; skipped with the reason where missing): no ``<pre>`` and no page title is wider than its column at
  1280 px, and no page scrolls sideways at 420 px. Screenshots of the index, Getting started, Concepts, an API
  page, a gallery page and a report at 1280 and 420 px are written to ``$SIS_ATTR_SCREENSHOTS`` (default: a
  directory under pytest's base temporary directory, printed by the test).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow  # one docs build (about two minutes) serves the module

ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = ROOT / "docs"
EXAMPLES_DIR = ROOT / "examples"
RUN_EXAMPLES = r"/plot_(sis_toy|overinterpretation_demo)"
"""The examples executed by the build here (fast, and with "Out:" tables)."""
BUILD_TIMEOUT_S = 1500
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
SCREENSHOT_PAGES = {
    "index": "index.html",
    "getting_started": "getting_started.html",
    "concepts": "concepts.html",
    "api_page": "generated/sis_attr.BatchedGradientSIS.html",
    "gallery_page": "auto_examples/plot_overinterpretation_demo.html",
}
WIDE, NARROW = (1280, 900), (420, 900)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------------ the build
@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sphinx -W`` on a copy of the docs (the checkout's generated pages are left alone): the HTML directory."""
    for module in ("sphinx", "sphinx_gallery", "numpydoc", "myst_parser", "pydata_sphinx_theme", "latex2mathml"):
        pytest.importorskip(module, reason=f"{module} is not installed (the docs extra: pip install -e '.[docs]')")
    work = tmp_path_factory.mktemp("docs-build")
    generated = shutil.ignore_patterns("_build", "generated", "auto_examples", "sg_execution_times.rst")
    shutil.copytree(DOCS_DIR, work / "docs", ignore=generated)
    shutil.copytree(EXAMPLES_DIR, work / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "CHANGELOG.md", work / "CHANGELOG.md")
    out = work / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(work / "docs"), str(out)]
    proc = subprocess.run(
        cmd,
        cwd=work,
        env=_env(SIS_ATTR_DOCS_EXAMPLES=RUN_EXAMPLES),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    (work / "build.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    assert proc.returncode == 0, "the strict docs build failed:\n" + (proc.stdout + proc.stderr)[-8000:]
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if not {"_sources", "_static"} & set(p.relative_to(site).parts))


class _Collector(HTMLParser):
    """The ids of a page and every (tag, attribute, value, rel) that points somewhere."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for key in ("id", "name"):
            if values.get(key):
                self.ids.add(values[key])
        for attr in ("href", "src", "data", "poster"):
            if attr in values:
                self.refs.append((tag, attr, values[attr], values.get("rel", "")))
        if "srcset" in values:
            for part in values["srcset"].split(","):
                if part.strip():
                    self.refs.append((tag, "srcset", part.split()[0], ""))
        if "style" in values:
            self.styles.append(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _parse(page: Path) -> _Collector:
    collector = _Collector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


def test_the_build_is_strict_and_complete(site: Path) -> None:
    for page in ("index", "install", "getting_started", "concepts", "choosing_parameters", "howto", "glossary"):
        assert (site / f"{page}.html").is_file(), page
    for page in ("sis_and_other_methods", "citing", "api", "changelog", "auto_examples/index"):
        assert (site / f"{page}.html").is_file(), page
    assert not (site / "sg_execution_times.html").exists()  # its DataTables came from CDNs


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    parsed = {page: _parse(page) for page in _pages(site)}
    ids = {page.resolve(): p.ids for page, p in parsed.items()}
    broken: list[str] = []
    for page, p in parsed.items():
        for tag, attr, value, _ in p.refs:
            if not value or EXTERNAL.match(value) or value.startswith(("mailto:", "javascript:", "data:")):
                continue
            parts = urlsplit(value)
            if parts.scheme:  # file:, tel: and the like: not ours
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
            where = f"{page.relative_to(site)}: <{tag} {attr}={value!r}>"
            if not target.exists():
                broken.append(f"{where}: no such file")
                continue
            if parts.fragment and target.suffix == ".html":
                known = ids.get(target)
                if known is None:
                    known = _parse(target).ids
                if unquote(parts.fragment) not in known:
                    broken.append(f"{where}: no element with id {parts.fragment!r}")
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:40])


_LOADING = {
    ("script", "src"),
    ("img", "src"),
    ("img", "srcset"),
    ("source", "src"),
    ("source", "srcset"),
    ("iframe", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("video", "src"),
    ("video", "poster"),
    ("audio", "src"),
    ("track", "src"),
    ("input", "src"),
}
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:[a-z][a-z0-9+.-]*:)?//[^'")\s]+)""", re.IGNORECASE)


def test_no_page_loads_anything_from_another_server(site: Path) -> None:
    found: list[str] = []
    for page in _pages(site):
        p = _parse(page)
        where = page.relative_to(site)
        for tag, attr, value, rel in p.refs:
            loads = (tag, attr) in _LOADING or (tag == "link" and attr == "href" and rel.lower() != "canonical")
            if loads and EXTERNAL.match(value):
                found.append(f"{where}: <{tag} {attr}={value!r}>")
        found += [f"{where}: {m}" for style in p.styles for m in _CSS_URL.findall(style)]
    for css in site.rglob("*.css"):
        found += [f"{css.relative_to(site)}: {m}" for m in _CSS_URL.findall(css.read_text(encoding="utf-8"))]
    assert not found, "pages load from other servers:\n" + "\n".join(found[:40])


def test_math_is_mathml_rendered_at_build_time(site: Path) -> None:
    text = (site / "concepts.html").read_text(encoding="utf-8")
    assert text.count("<math") >= 10
    assert "\\(" not in text and "\\lceil" not in text and "mathjax" not in text.lower()


def test_api_names_have_one_page_each_and_the_changelog_links_them(site: Path) -> None:
    generated = {p.stem for p in (site / "generated").glob("*.html")}
    assert "sis_attr.exceptions.SISValueError" in generated and "sis_attr.SISValueError" not in generated
    assert "sis_attr.functional.backselect" in generated and "sis_attr.backselect" not in generated
    changelog = (site / "changelog.html").read_text(encoding="utf-8")
    assert 'href="generated/sis_attr.SufficientInputSubsets.html#sis_attr.SufficientInputSubsets"' in changelog
    assert changelog.count('href="generated/') >= 30
    # the changelog's "previous" is a guide page, not the last API page
    prev = re.search(r'class="left-prev"\s+href="([^"]+)"', changelog)
    assert prev is None or "generated/" not in prev.group(1)


def test_api_pages_list_methods_on_this_page(site: Path) -> None:
    text = (site / "generated" / "sis_attr.SufficientInputSubsets.html").read_text(encoding="utf-8")
    toc = text[text.index('id="pst-page-navigation-heading') :]
    for method in ("attribute", "explain"):
        assert f"SufficientInputSubsets.{method}" in toc, method


# ------------------------------------------------------------------------------------------------ the browser
def _browser_or_skip() -> tuple[Any, Any]:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (the dev extra: pip install -e '.[dev]')"
    )
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).is_file() and Path(chromedriver).is_file()):
        pytest.skip(
            "the layout tests need Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver):"
            " apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={WIDE[0]},{WIDE[1]}")
    return webdriver, (options, Service(chromedriver))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver, (options, service) = _browser_or_skip()
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("SIS_ATTR_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("docs-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _viewport(driver: Any, width: int, height: int) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


_OVERFLOWING = """
const out = [];
for (const el of document.querySelectorAll('pre, h1')) {
  if (el.closest('.sis-allow-overflow')) continue;
  const column = el.closest('.bd-article') || document.body;
  const right = el.getBoundingClientRect().right, limit = column.getBoundingClientRect().right;
  if (el.scrollWidth > el.clientWidth + 1 || right > limit + 1) {
    out.push(el.tagName + ': ' + el.textContent.trim().split('\\n')[0].slice(0, 80));
  }
}
return out;
"""


def _guide_and_gallery_pages(site: Path) -> list[Path]:
    pages = [p for p in _pages(site) if p.parent == site and p.name not in ("search.html", "genindex.html")]
    pages += sorted((site / "auto_examples").glob("*.html"))
    pages += sorted((site / "generated").glob("*.html"))
    return pages


def test_no_code_block_or_title_is_wider_than_its_column_at_1280(site: Path, browser: Any) -> None:
    _viewport(browser, *WIDE)
    problems: list[str] = []
    for page in _guide_and_gallery_pages(site):
        browser.get(page.as_uri())
        problems += [f"{page.relative_to(site)}: {what}" for what in browser.execute_script(_OVERFLOWING)]
    assert not problems, "cut off at 1280 px:\n" + "\n".join(problems[:40])


def test_pages_do_not_scroll_sideways_at_420(site: Path, browser: Any, demo_report: Path) -> None:
    _viewport(browser, *NARROW)
    problems: list[str] = []
    pages = [site / p for p in SCREENSHOT_PAGES.values()]
    pages += [demo_report, demo_report.parent / "shortcut-cnn" / "index.html"]
    for page in pages:
        browser.get(page.as_uri())
        width = browser.execute_script("return document.documentElement.scrollWidth")
        if width > NARROW[0] + 1:
            problems.append(f"{page}: {width} px wide")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The comparison page of a quick ``run_demo`` (a real report, as users get it)."""
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the demo extra)")
    from sis_attr.demo import run_demo

    out = tmp_path_factory.mktemp("demo-report") / "demo"
    index = run_demo(out, fast=True, show_progress=False).index
    assert index is not None and (out / "shortcut-cnn" / "index.html").is_file()
    return index


def test_screenshots_of_the_main_pages_and_a_report(
    site: Path, browser: Any, demo_report: Path, screenshots: Path
) -> None:
    pages = {name: site / rel for name, rel in SCREENSHOT_PAGES.items()}
    pages["report"] = demo_report
    pages["report_model"] = demo_report.parent / "shortcut-cnn" / "index.html"
    written: list[Path] = []
    for name, page in pages.items():
        assert page.is_file(), page
        for width, height in (WIDE, NARROW):
            _viewport(browser, width, height)
            browser.get(page.as_uri())
            full = int(browser.execute_script("return document.documentElement.scrollHeight"))
            _viewport(browser, width, min(max(height, full), 6000))
            shot = screenshots / f"{name}_{width}.png"
            assert browser.save_screenshot(str(shot)), shot
            written.append(shot)
    print(f"\nscreenshots: {screenshots}")
    assert all(p.stat().st_size > 10_000 for p in written)
