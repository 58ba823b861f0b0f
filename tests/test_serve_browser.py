"""A real browser: headless Chromium loads the page from a live ``ppad serve``, uploads a real film
and shows its score and views. Needs Debian's ``chromium`` and ``chromium-driver``."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from tests.conftest import ZHANGLAB, needs_zhanglab

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ppad[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
import httpx  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from tests.test_serve import live_server, train_tiny_run  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium not found: apt-get install chromium chromium-driver (Debian), as .ci/run does",
)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


@needs_chromium
@needs_zhanglab
def test_the_page_scores_a_dropped_film_and_shows_it(tmp_path, demo_data, browser):
    film = sorted((ZHANGLAB / "test" / "pneumonia").glob("*.jpeg"))[0]
    run_dir = train_tiny_run(tmp_path / "run", demo_data)
    with live_server(run_dir, tmp_path / "serve.log") as url:
        api = httpx.post(f"{url}/v1/score", files={"file": (film.name, film.read_bytes())}, timeout=30).json()
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "ppad on tiny"))
        browser.find_element(By.ID, "file").send_keys(str(film))
        wait.until(expected_conditions.visibility_of_element_located((By.ID, "result")))
        wait.until(
            lambda driver: driver.execute_script(
                "const i = document.getElementById('film'); return !i.hidden && i.complete && i.naturalWidth > 0"
            )
        )
        text = {
            name: browser.find_element(By.ID, name).text
            for name in ("score", "decision", "top-view", "result-name", "status")
        }
        rows = [
            row.find_elements(By.TAG_NAME, "td") for row in browser.find_elements(By.CSS_SELECTOR, "#views tbody tr")
        ]
        shown = [(cells[0].text, cells[1].text) for cells in rows]
        picture_src = browser.find_element(By.ID, "film").get_attribute("src")
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        screenshot = tmp_path / "page.png"
        assert browser.save_screenshot(str(screenshot))

    assert text["score"] == f"{api['score']:.3f}"
    assert text["decision"] == api["decision"] and text["top-view"] == api["top_view"]
    assert text["result-name"].startswith(f"{film.name} · JPEG 224×224") and text["status"] == f"Scored {film.name}."
    assert shown == [(name, f"{p:.3f}") for name, p in api["views"].items()]
    assert len(shown) == 5 and shown[-1][0] == "whole image"
    assert picture_src == "data:image/png;base64," + api["overlay_png"]  # the film with its map
    assert all(name.startswith((url, "blob:", "data:")) for name in resources), resources
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.size[0] >= 1000
        assert len(picture.convert("L").getcolors(1 << 16)) > 50  # a rendered page, not a blank one
    assert screenshot.stat().st_size > 20_000
