"""Make the annotated screenshot of a report shown in the How-to guide (``docs/_static/report_annotated.png``).

Runs the digits demo (``run_demo(fast=True)``), opens the shortcut model's report in headless Chromium at
1280 px, finds the verdict, its signs and caveats, the summary table and the examples figure on the page, and
draws numbered callouts beside them with matplotlib. Rerun it after a change to the report's layout::

    python docs/scripts/report_screenshot.py

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
OUT = DOCS / "_static" / "report_annotated.png"
WIDTH = 1280
CALLOUTS = (
    (".verdict .headline", "The verdict, computed from this report's own numbers"),
    (".verdict ul", "The paper's three signs: what this audit observed, and the paper's value"),
    (".verdict .caveats", "Caveats: method, baseline, features, sample size"),
    ("table", "Every summary row with a one-line explanation"),
    ('img[src="figures/examples.png"]', "Example images, their SIS alone, and where the SIS lies"),
)


def _screenshot(page: Path) -> tuple[bytes, list[tuple[float, float, float, float]], int]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={WIDTH},900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        metrics = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        boxes = []
        for selector, _ in CALLOUTS:
            r = driver.execute_script(
                "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                "return [r.left, r.top + window.scrollY, r.width, r.height];",
                selector,
            )
            boxes.append(tuple(float(v) for v in r))
        return driver.get_screenshot_as_png(), boxes, height
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from sis_attr.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp) / "demo", fast=True, show_progress=False)
        png, boxes, _ = _screenshot(Path(tmp) / "demo" / "shortcut-cnn" / "index.html")
    image = plt.imread(io.BytesIO(png), format="png")
    bottom = int(min(image.shape[0], boxes[-1][1] + boxes[-1][3] + 20))
    image = image[:bottom]
    margin = 430  # room for the callouts on the right
    fig = plt.figure(figsize=((WIDTH + margin) / 100, bottom / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, extent=(0, image.shape[1], image.shape[0], 0))
    ax.set_xlim(0, WIDTH + margin)
    ax.set_ylim(bottom, 0)
    ax.set_axis_off()
    previous = -1e9
    for number, ((x, y, w, h), (_, text)) in enumerate(zip(boxes, CALLOUTS, strict=True), start=1):
        ax.add_patch(Rectangle((x - 4, y - 4), w + 8, h + 8, fill=False, edgecolor="#d35400", linewidth=2.5))
        label_x, label_y = WIDTH + 20, max(y + min(h, 60) / 2, previous + 90)  # labels never overlap
        previous = label_y
        ax.annotate(
            f"{number}  " + textwrap.fill(text, 34, subsequent_indent="    "),
            xy=(x + w + 4, y + min(h, 60) / 2),
            xytext=(label_x, label_y),
            fontsize=13,
            va="center",
            color="#222222",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#fff3e0", "edgecolor": "#d35400"},
            arrowprops={"arrowstyle": "->", "color": "#d35400", "lw": 1.8},
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=60)  # shrunk: the callouts stay readable, the file stays small
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
