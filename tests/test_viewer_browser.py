"""The viewer and the HTML report in a real browser: Debian's headless Chromium driven over WebDriver.
Skipped, saying how to install it, where Chromium is absent (CI installs it)."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("duckdb", reason="pip install 'humback[view]' to run the viewer tests")
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in humback[dev])")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("Chromium not found: apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_viewer import HOSTILE, make_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    import uvicorn

    from humback.viewer.server import create_app

    run = make_run(tmp_path_factory.mktemp("run"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def wait(driver, condition, timeout: float = 90):
    # Every check waits for what the page shows (it returns as soon as it holds); the long cap only matters
    # on a machine busy with other jobs, where the first read of the run can take many seconds.
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def count_text(driver) -> str:
    return driver.find_element(By.ID, "count").text


def test_table_filters_search_detail_diff_and_eval_tabs(browser, viewer, tmp_path):
    browser.get(viewer)
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#plots svg polyline"))  # the loss curve, drawn
    browser.save_screenshot(str(tmp_path / "funnel.png"))
    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=candidates]").click()
    wait(browser, lambda d: count_text(d) == "120 candidates match")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#table tbody tr")) == 50)

    browser.find_element(By.ID, "min-score").send_keys("4")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(browser, lambda d: count_text(d) != "120 candidates match")
    narrowed = int(count_text(browser).split()[0])
    assert 0 < narrowed < 120
    browser.find_element(By.ID, "min-score").clear()
    browser.find_element(By.ID, "search").send_keys("recipes")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(browser, lambda d: count_text(d) == "12 candidates match")
    browser.save_screenshot(str(tmp_path / "search.png"))

    browser.find_element(By.ID, "search").clear()
    browser.find_element(By.ID, "search").send_keys("script")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(browser, lambda d: count_text(d) == "1 candidates match")
    browser.find_element(By.CSS_SELECTOR, "#table tbody tr.row").click()
    wait(browser, lambda d: d.find_element(By.ID, "detail").is_displayed())
    wait(browser, lambda d: HOSTILE in [p.text for p in d.find_elements(By.CSS_SELECTOR, "#detail pre")])
    # the markup is shown as text ...
    assert not browser.find_elements(
        By.CSS_SELECTOR, "#detail img, #detail script"
    )  # ... and never became markup
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (no script ran)
    browser.save_screenshot(str(tmp_path / "detail.png"))
    browser.find_element(By.ID, "close").click()

    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=diff]").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#diff-body h3")) == 2)
    assert browser.find_element(By.CSS_SELECTOR, "#diff-body h3").text.startswith(
        "selected in iteration 2, not in 1:"
    )
    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=eval]").click()
    wait(browser, lambda d: "No evaluation yet" in d.find_element(By.ID, "eval-body").text)
    browser.save_screenshot(str(tmp_path / "eval.png"))
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("funnel", "search", "detail", "eval"))


def test_html_report_opens_from_disk_with_no_request(browser, tmp_path):
    from humback.report import html_page

    page = tmp_path / "index.html"
    rows = [{"id": "x", "score": 4.5, "instruction": "Explain", "response": HOSTILE, "iteration": 1}]
    md = "# humback run `t`\n\n| step | rows |\n|---|---|\n| documents | 3 |\n"
    page.write_text(html_page("t", md, tmp_path, rows))
    browser.get(page.as_uri())
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert HOSTILE in browser.find_element(By.TAG_NAME, "body").text  # shown as text
    assert not browser.find_elements(By.CSS_SELECTOR, "img[onerror], script")


def test_a_shared_view_opens_a_rewrite_beside_its_original(browser, viewer, tmp_path):
    """The tab, the filters and the open row live in the address: opening it shows the same view, with the
    rewrite beside the original and their differences marked; headers are words, histograms have axes."""
    browser.get(viewer + "#tab=candidates&iteration=2&rewrite=rewritten&row=r010")
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait(browser, lambda d: count_text(d) == "1 candidates match")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#table thead th")]
    assert "score (iter 2)" in headers and "selected (iter 2)" in headers and "rewrite (iter 2)" in headers
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .side-by-side ins"))
    inserted = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#detail .side-by-side ins")]
    assert "Rewritten:" in inserted and "explains" in inserted
    assert (
        "rewritten: training uses the rewrite"
        in browser.find_element(By.CSS_SELECTOR, "#detail .side-by-side h3").text
    )
    browser.save_screenshot(str(tmp_path / "rewrite.png"))
    # Filtering changes the address, so the view can be shared as it is now.
    browser.find_element(By.ID, "close").click()
    assert "row=" not in browser.current_url and "rewrite=rewritten" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=funnel]").click()
    assert "tab=funnel" in browser.current_url
    axes = browser.find_elements(By.CSS_SELECTOR, "#histograms .y-axis span")
    assert axes and axes[0].text.endswith("candidates") and axes[-1].text == "0"
