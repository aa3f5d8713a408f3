"""report.html in a real browser: Debian's chromium, headless, driven by selenium through Debian's chromedriver
(nothing is downloaded). The pages are opened from disk; the test checks that they render without console
errors, that every image loads, that the thumbnails reorder by a metric, and that the sweep page links to each
run's page. Screenshots are saved in the test's tmp directory and their paths printed.

Needs ``apt-get install -y chromium chromium-driver`` (and selenium, from the ``test`` extra); skipped otherwise.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import sweep_report
from tests.conftest import run_in_process

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no chromium/chromedriver on PATH (Debian: apt-get install -y chromium chromium-driver)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

RUN = ("+experiment=digits", "loop.rounds=2", "selection.budget=7", "metrics=quality", "filters=quality",
       "filters.metrics.brightness=[0.2,0.35]")
IMAGES_LOADED = "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                     "--hide-scrollbars", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(IMAGES_LOADED))


def check_rendered(driver: Any) -> int:
    """No console message of warning level or worse, every image decoded; the number of images."""
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.alt)"
    )
    assert broken == []
    return int(driver.execute_script("return document.images.length"))


def screenshot(driver: Any, path: Path, capsys: pytest.CaptureFixture) -> None:
    """The whole page (up to 8,000 pixels high) as a PNG, its path printed past pytest's capture."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(height, 8000))
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with capsys.disabled():
        print(f"\nscreenshot: {path}")


def tile_values(driver: Any, key: str) -> list[float]:
    """``data-<key>`` of the first round's thumbnails, in the order the page shows them."""
    return [float(v) for v in driver.execute_script(
        f"return Array.from(document.querySelector('.grid.sortable').children).map(t => t.dataset.{key})"
    )]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for acquisition in ("entropy", "random"):
        run_in_process(root / acquisition, *RUN, f"acquisition={acquisition}")
    (root / "entropy" / "label_issues.csv").write_text(
        "item_id,given_label,suggested_label,score,round\n" + "".join(
            f"{line.split(',')[0]},3,8,0.{i},1\n"
            for i, line in enumerate((root / "entropy" / "selected" / "round_000.csv").read_text().splitlines()[1:4])
        )
    )
    run_in_process(root / "entropy", *RUN, "acquisition=entropy")  # the page again, now with the suspects
    sweep_report.write_report(root, target=0.8)
    return root


def test_run_page_renders_and_orders_thumbnails(browser: Any, sweep: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, sweep / "entropy" / "report.html")
    images = check_rendered(browser)
    # 2 rounds of 7, up to 12 removed per round, 3 suspects, and the figures: curve, stage times, metrics.
    tiles = int(browser.execute_script("return document.querySelectorAll('.tile img').length"))
    assert images == tiles + 3 and tiles >= 2 * 7 + 3
    assert tile_values(browser, "rank") == list(range(1, 8))

    order = Select(browser.find_element(By.ID, "order"))
    order.select_by_value("brightness:desc")
    shown = tile_values(browser, "brightness")
    assert shown == sorted(shown, reverse=True) and len(shown) == 7
    marked = browser.execute_script(
        "return Array.from(document.querySelectorAll('.tile dd.on')).map(d => d.dataset.key)"
    )
    assert marked and set(marked) == {"brightness"}
    order.select_by_value("rank:asc")
    assert tile_values(browser, "rank") == list(range(1, 8))
    check_rendered(browser)  # the script ran without errors
    screenshot(browser, tmp_path / "run_report.png", capsys)


def test_sweep_page_renders_and_links_each_run(browser: Any, sweep: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, sweep / "report.html")
    assert check_rendered(browser) == 3  # learning curves, difference from random, AULC and labels to target
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "section > h2")]
    assert headings[:3] == ["Learning curves", "Difference from random", "Area under the curve and labels to target"]
    screenshot(browser, tmp_path / "sweep_report.png", capsys)
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#runs a")]
    assert [link.rsplit("/", 2)[-2] for link in links] == ["entropy", "random"]
    browser.get(links[1])
    assert browser.title.startswith("digits · random · seed 0")
    check_rendered(browser)
