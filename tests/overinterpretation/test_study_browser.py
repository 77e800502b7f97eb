"""The study page in a real browser: headless Chromium driven through Selenium.

A participant passes the consent screen, answers every image (by clicking in some batches, by number keys in
others, going back once each way, reloading the page half-way), downloads the answers, and :func:`score_study`
on the downloaded file must reproduce the accuracy of the answers chosen. The layout is checked at 1280 px, at
200% zoom and at a phone's 420 px. Screenshots of every stage are saved under the test's ``screenshots``
directory (``pytest --basetemp=DIR`` keeps them somewhere known).

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and the
``selenium`` package (the ``dev`` extra); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sis_attr.overinterpretation import Study, make_study, score_study

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install sis-attr[dev])")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        "headless browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, "
        "/usr/bin/chromedriver): apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WIDE = (1280, 900)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, digits: Any, digits_model: nn.Module) -> Study:
    """One digit of each class, confidently classified, at 5%, 30%, 50% and full: 40 images to classify."""
    return make_study(
        digits_model,
        (digits.test_images, digits.test_labels),
        out=tmp_path_factory.mktemp("browser") / "study",
        per_class=1,
        class_names=DIGIT_NAMES,
        threshold=0.9,
        show_progress=False,
    )


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    path = tmp_path / "screenshots"
    path.mkdir()
    return path


@pytest.fixture
def driver(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={WIDE[0]},{WIDE[1]}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    viewport(browser, *WIDE)
    try:
        yield browser
    finally:
        browser.quit()


def viewport(browser: Any, width: int, height: int, scale: float = 1.0, mobile: bool = False) -> None:
    """Lay the page out ``width`` CSS pixels wide; ``scale=2`` is the browser's 200% zoom (or a phone's screen)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
    )


def visible(browser: Any, screen: str) -> bool:
    return bool(browser.find_element(By.ID, screen).is_displayed())


def current_item(browser: Any) -> str:
    return str(browser.find_element(By.ID, "stage").get_attribute("data-item"))


def press(browser: Any, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def answer(browser: Any, study: Study, value: int, *, by_key: bool) -> None:
    if by_key:
        press(browser, str(study.classes.index(value)))
    else:
        browser.find_element(By.CSS_SELECTOR, f'#choices button[data-choice="{value}"]').click()


def no_horizontal_scroll(browser: Any) -> bool:
    return bool(browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))


def wait_for_download(folder: Path, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == ".json"]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no answer file was downloaded to {folder} within {timeout} s")


def test_a_participant_answers_everything_and_the_score_matches(
    study: Study, driver: Any, downloads: Path, shots: Path
) -> None:
    labels = dict(zip(study.item_ids, study.item_labels.tolist(), strict=True))
    intended: dict[str, int] = {}
    driver.get(study.page.resolve().as_uri())
    assert visible(driver, "consent") and not visible(driver, "trial")
    driver.save_screenshot(str(shots / "01_consent.png"))
    driver.find_element(By.ID, "participant").send_keys("P-07")
    driver.find_element(By.ID, "start").click()

    n_batches = len(study.fractions)
    for batch in range(n_batches):
        assert visible(driver, "intro")
        assert driver.find_element(By.ID, "intro-title").text == f"Batch {batch + 1} of {n_batches}"
        driver.save_screenshot(str(shots / f"02_batch{batch + 1}_intro.png"))
        if batch % 2:
            press(driver, Keys.ENTER)  # the Begin button has the focus
        else:
            driver.find_element(By.ID, "begin").click()
        by_key = batch % 2 == 1  # batches 2 and 4 by number keys, 1 and 3 by mouse
        for position in range(study.n_images):
            assert visible(driver, "trial")
            item = current_item(driver)
            assert study.item_ids.index(item) == batch * study.n_images + position  # the key's order
            if position == 0:
                driver.save_screenshot(str(shots / f"03_batch{batch + 1}_first_image.png"))
            truth = labels[item]
            choice = truth if position % 3 else (truth + 1) % 10  # every third answer wrong, on purpose
            if position == 2 and batch in (0, 1):  # answer, go back (button / Backspace), answer again
                answer(driver, study, (choice + 5) % 10, by_key=by_key)
                assert current_item(driver) != item
                if by_key:
                    press(driver, Keys.BACKSPACE)
                else:
                    driver.find_element(By.ID, "back").click()
                assert current_item(driver) == item
                pressed = driver.find_element(By.CSS_SELECTOR, '#choices button[aria-pressed="true"]')
                assert int(pressed.get_attribute("data-choice")) == (choice + 5) % 10
            if batch == 2 and position == 4:  # a reload keeps the progress
                driver.refresh()
                assert visible(driver, "consent")
                resume = driver.find_element(By.ID, "resume")
                assert resume.is_displayed() and f"{batch * study.n_images + position} of" in resume.text
                resume.click()
                assert current_item(driver) == item
            answer(driver, study, choice, by_key=by_key)
            intended[item] = choice
        progress = int(driver.find_element(By.ID, "progress").get_attribute("value"))
        assert progress == (batch + 1) * study.n_images - 1 or batch == n_batches - 1

    assert visible(driver, "done")
    driver.save_screenshot(str(shots / "04_done.png"))
    driver.find_element(By.ID, "download").click()
    file = wait_for_download(downloads)
    assert driver.find_element(By.ID, "saved").is_displayed()
    driver.save_screenshot(str(shots / "05_downloaded.png"))
    assert file.name == driver.find_element(By.ID, "filename").text

    payload = json.loads(file.read_text())
    assert payload["study_id"] == study.study_id and payload["participant"] == "P-07" and payload["complete"]
    assert payload["answers"] == intended and set(payload) == {
        "format",
        "format_version",
        "study_id",
        "session",
        "participant",
        "complete",
        "n_answers",
        "answers",
    }  # nothing but the answers is collected
    score = score_study(study.key, file)
    right = torch.tensor([intended[i] == labels[i] for i in study.item_ids], dtype=torch.float64)
    expected = [float(right[study.item_batches == b].mean()) for b in range(n_batches)]
    assert score.accuracy.tolist() == [pytest.approx(expected)]
    assert score.participants == ("P-07",)
    with pytest.raises(ValueError, match="given twice"):
        score_study(study.key, file, file)


def test_the_page_reads_well_at_200_percent_and_on_a_phone(study: Study, driver: Any, shots: Path) -> None:
    driver.get(study.page.resolve().as_uri())
    start = driver.find_element(By.ID, "start")
    start.click()
    driver.find_element(By.ID, "begin").click()
    stage = driver.find_element(By.ID, "stage")
    assert stage.value_of_css_property("image-rendering") == "pixelated"
    assert stage.size["width"] >= 8 * 8 * 4  # the 8x8 digits scaled up at least 32 times
    assert no_horizontal_scroll(driver)
    driver.save_screenshot(str(shots / "10_wide_trial.png"))

    layouts = {"zoom200": (WIDE[0] // 2, WIDE[1] // 2, 2.0, False), "phone420": (420, 860, 2.0, True)}
    for name, (width, height, scale, mobile) in layouts.items():
        viewport(driver, width, height, scale, mobile)
        assert driver.execute_script("return window.innerWidth") == width
        assert no_horizontal_scroll(driver), name
        image = stage.rect
        assert 0 <= image["x"] and image["x"] + image["width"] <= width, name
        for button in driver.find_elements(By.CSS_SELECTOR, "#choices button"):
            rect = button.rect
            assert rect["height"] >= 44 and 0 <= rect["x"] and rect["x"] + rect["width"] <= width, name
        driver.save_screenshot(str(shots / f"11_{name}_trial.png"))
    # the consent screen, read on a phone
    driver.refresh()
    assert no_horizontal_scroll(driver)
    driver.save_screenshot(str(shots / "12_phone420_consent.png"))
    viewport(driver, WIDE[0] // 2, WIDE[1] // 2, 2.0)
    driver.save_screenshot(str(shots / "13_zoom200_consent.png"))
    assert no_horizontal_scroll(driver)


@pytest.mark.real_data
def test_cifar_subsets_in_colour(tmp_path: Path, cifar: Any, driver: Any, shots: Path) -> None:
    """The paper's setting on real CIFAR-10 test images (ResNet20, gradient backward selection, the mean-colour
    baseline): the page shows colour subsets on grey, and the model is right on every full image."""
    from sis_attr.datasets import CIFAR10_CLASSES, CIFAR10_MEAN_STD_AKAMASTER

    mean = torch.tensor(CIFAR10_MEAN_STD_AKAMASTER[0]).view(1, 3, 1, 1)
    study = make_study(
        cifar.resnet20,
        (cifar.images, cifar.labels),
        out=tmp_path / "cifar",
        per_class=1,
        class_names=CIFAR10_CLASSES,
        method="gradient",
        k=0.1,
        baselines=mean,  # hidden pixels are the mean colour for the model (0 after normalisation), grey for people
        show_progress=False,
    )
    assert study.model_accuracy[-1] == 1.0 and study.kept[0] == 52
    driver.get(study.page.resolve().as_uri())
    driver.find_element(By.ID, "start").click()
    for batch in range(len(study.fractions)):
        driver.find_element(By.ID, "begin").click()
        assert no_horizontal_scroll(driver)
        driver.save_screenshot(str(shots / f"20_cifar_batch{batch + 1}.png"))
        for _ in range(study.n_images):
            press(driver, "0")
    assert visible(driver, "done")
