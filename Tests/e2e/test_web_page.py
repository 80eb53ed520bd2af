"""The web page of serve-http (§10, protocol/README.md "Web page") driven in headless Chromium
with selenium: the key prompt, an upload turning `completed` live, a source's columns and
rows with filter, sort, cursor paging, a filter error where it occurs, download, delete with
confirmation; hostile cells rendered as text; the page's security headers. Screenshots go to
Tests/e2e/artifacts/ (git-ignored); the one of the list and a source's rows is copied to
docs/web-page.png (the README's) with DATASOURCE_AGENT_UPDATE_SCREENSHOT=1."""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from agentproc import ROOT
from restproc import RestServer, create_key, http

selenium = pytest.importorskip("selenium", reason="pip install -r Tests/e2e/requirements.txt (selenium)")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CATEGORIES = ["Books", "Garden", "Kitchen", "Toys"]
# 130 products: three pages of 50, prices spread over 0.5 … 299.5.
PRODUCTS = "product_id,product_name,price,category,in_stock\n" + "".join(
    f"P{i:03d},Item {i},{(i * 37) % 300 + 0.5},{CATEGORIES[i % 4]},{'yes' if i % 3 else 'no'}\n" for i in range(1, 131))
SCRIPT_CELL = "<script>alert(1)</script>"
IMG_CELL = '"><img src=x onerror=alert(1)>'
HOSTILE_NAME = "<img src=x onerror=alert(1)>.csv"


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/test installs them)")
    return chromium, driver


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    store = tmp_path_factory.mktemp("web") / "store"
    write = create_key(store, "write", "page")
    server = RestServer(store, "--rate-limit", "100000")
    with server:
        yield SimpleNamespace(store=store, base=server.base, api=server.base + "/api/v2", write=write, server=server)
    assert server.proc.returncode == 0, server.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(downloads):
    chromium, chromedriver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1500", "--lang=en-US", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "safebrowsing.enabled": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(exist_ok=True)
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


def wait(driver, condition, timeout=20, message=""):
    # The page re-renders its tables: an element may go stale between two polls.
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def shot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def find(driver, selector: str):
    return driver.find_element(By.CSS_SELECTOR, selector)


def visible(selector: str):
    return EC.visibility_of_element_located((By.CSS_SELECTOR, selector))


def text_in(selector: str, text: str):
    return EC.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text)


def status_of(driver, datasource_id: str) -> str:
    cells = driver.find_elements(By.CSS_SELECTOR, f'#sources tr[data-id="{datasource_id}"] .status')
    return cells[0].text if cells else ""


def column_values(driver, index: int) -> list[str]:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"#rows tbody tr td:nth-child({index + 1})")]


def no_alert(driver) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    pytest.fail(f"an alert opened: {text}")


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_page_and_assets_are_served_with_a_strict_policy(rest):
    for path, name, content_type in (("/", "index.html", "text/html; charset=utf-8"),
                                     ("/app.js", "app.js", "text/javascript; charset=utf-8"),
                                     ("/app.css", "app.css", "text/css; charset=utf-8"),
                                     ("/favicon.svg", "favicon.svg", "image/svg+xml")):
        response = requests.get(rest.base + path, timeout=10)  # no key: the page asks for one
        assert response.status_code == 200, path
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.content == (ROOT / "web" / name).read_bytes(), "run scripts/gen-web-assets and commit"
        again = requests.get(rest.base + path, headers={"If-None-Match": response.headers["ETag"]}, timeout=10)
        assert again.status_code == 304
    page = (ROOT / "web" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "no inline script"
    assert " style=" not in page and "<style" not in page, "no inline style"
    script = (ROOT / "web" / "app.js").read_text()
    assert not re.search(r"\.(innerHTML|outerHTML)\s*\+?=|insertAdjacentHTML\(|document\.write|\beval\(", script)
    # The key never goes into a URL: the script sends it in the Authorization header only.
    assert re.findall(r"searchParams\.set\('(\w+)'", script) == ["token", "lastEventId"]


def test_key_prompt(rest, driver):
    driver.get(rest.base + "/")
    wait(driver, visible("#key-input"))
    assert find(driver, "#list-view").is_displayed() is False
    field = find(driver, "#key-input")
    assert field.get_attribute("type") == "password"
    assert driver.switch_to.active_element == field, "the prompt has the focus"
    field.send_keys("dsa_not_a_key", Keys.ENTER)
    wait(driver, text_in("#key-error", "API key invalid or revoked"))
    assert field.get_attribute("aria-invalid") == "true"
    shot(driver, "01-key-prompt")
    find(driver, "#key-input").send_keys(rest.write, Keys.ENTER)
    wait(driver, visible("#list-view"))
    wait(driver, text_in("#live-text", "Live"))
    assert driver.execute_script("return sessionStorage.getItem('datasource-agent.key')") == rest.write
    assert rest.write not in driver.current_url
    # A reload keeps the key (session storage), with no prompt.
    driver.refresh()
    wait(driver, visible("#list-view"))
    assert not find(driver, "#key-view").is_displayed()


def row_id_of(driver, file_name):
    """The data-id of the list's row whose link reads `file_name`, or None. Read in one script:
    the list is redrawn as statuses change, so an element found in one call may be gone by
    the next."""
    return driver.execute_script("""
        const name = arguments[0];
        const link = [...document.querySelectorAll('#sources tr[data-id] th a')].find(a => a.textContent === name);
        return link ? link.closest('tr').dataset.id : null;""", file_name)


def test_upload_turns_completed_live_then_filter_sort_page_download_delete(rest, driver, tmp_path, downloads):
    csv = tmp_path / "products.csv"
    csv.write_text(PRODUCTS)
    wait(driver, text_in("#live-text", "Live"))
    driver.execute_script("window.notReloaded = true")
    find(driver, "#file-input").send_keys(str(csv))
    datasource_id = wait(driver, lambda d: row_id_of(d, "products.csv"))
    wait(driver, lambda d: status_of(d, datasource_id) == "completed", message="the status turns completed")
    assert driver.execute_script("return window.notReloaded") is True, "no reload"
    cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, f'#sources tr[data-id="{datasource_id}"] td')]
    assert cells[0] == "text/csv" and cells[1].endswith("KB") and cells[2] == "completed"

    # Another client's upload appears and completes live too.
    other = requests.post(f"{rest.api}/datasources", headers={"Authorization": f"Bearer {rest.write}"},
                          files={"file": ("from-curl.csv", "a,b\n1,2\n")}, timeout=30).json()["datasourceId"]
    wait(driver, lambda d: status_of(d, other) == "completed", message="another client's upload shows up")

    find(driver, f'#sources tr[data-id="{datasource_id}"] th a').click()
    wait(driver, text_in("#source-title", "products.csv"))
    assert driver.current_url.endswith(f"#/sources/{datasource_id}")
    wait(driver, text_in("#rows-info", "Rows 1–50 of 130"))
    columns = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#columns tbody th")]
    assert columns == ["product_id", "product_name", "price", "category", "in_stock"]
    types = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#columns tbody tr td:nth-child(2)")]
    assert types == ["string", "string", "number", "string", "boolean"]
    meta = find(driver, "#source-meta").text
    assert "Rows\n130" in meta and "Cleaned rows\n130" in meta
    assert len(driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 50

    # Filter.
    box = find(driver, "#filter-input")
    box.send_keys("price > 100", Keys.ENTER)
    wait(driver, text_in("#rows-info", "matching the filter"))
    matching = sum(1 for line in PRODUCTS.splitlines()[1:] if float(line.split(",")[2]) > 100)
    assert f"of {matching} matching" in find(driver, "#rows-info").text
    assert all(float(v) > 100 for v in column_values(driver, 2))

    # Sort by a column header (ascending, then descending), by keyboard too.
    sort_price = find(driver, '#rows button.sort[data-column="price"]')
    sort_price.click()
    wait(driver, lambda d: find(d, '#rows th:nth-child(3)').get_attribute("aria-sort") == "ascending")
    prices = [float(v) for v in column_values(driver, 2)]
    assert prices == sorted(prices) and prices[0] > 100
    find(driver, '#rows button.sort[data-column="price"]').send_keys(Keys.ENTER)
    wait(driver, lambda d: find(d, '#rows th:nth-child(3)').get_attribute("aria-sort") == "descending")
    descending = [float(v) for v in column_values(driver, 2)]
    assert descending == sorted(descending, reverse=True) and descending[0] == max(float(line.split(",")[2]) for line in PRODUCTS.splitlines()[1:])
    # The page as the README shows it: the list and a source's rows, filtered and sorted.
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#uploads li"), message="finished uploads leave")
    driver.set_window_size(1280, 2000)
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    time.sleep(0.3)
    shot(driver, "02-filtered-sorted")
    # The README's picture: rewritten when asked (or missing), so that a test run does not
    # leave the committed PNG modified (its times differ on every run).
    readme_picture = ROOT / "docs" / "web-page.png"
    if os.environ.get("DATASOURCE_AGENT_UPDATE_SCREENSHOT") == "1" or not readme_picture.exists():
        readme_picture.parent.mkdir(exist_ok=True)
        shutil.copy(ARTIFACTS / "02-filtered-sorted.png", readme_picture)
    driver.set_window_size(1280, 1500)

    # Page forward and back by cursor.
    first_page = column_values(driver, 0)
    find(driver, "#next").click()
    wait(driver, text_in("#rows-info", f"Rows 51–{matching} of {matching}"))
    second_page = column_values(driver, 0)
    assert second_page and not set(second_page) & set(first_page)
    assert [float(v) for v in column_values(driver, 2)][0] <= descending[-1]
    assert find(driver, "#next").get_attribute("disabled") is not None
    find(driver, "#prev").click()
    wait(driver, text_in("#rows-info", "Rows 1–50"))
    assert column_values(driver, 0) == first_page

    find(driver, "#filter-clear").click()
    wait(driver, text_in("#rows-info", "Rows 1–50 of 130."))

    # A bad filter: its error, where it occurs.
    box = find(driver, "#filter-input")
    box.clear()
    box.send_keys("price > 'dear'", Keys.ENTER)
    wait(driver, visible("#filter-error p"))
    message = find(driver, "#filter-error p").text
    assert message.startswith("Filter error at character 9:"), message
    caret = find(driver, "#filter-error pre").text.split("\n")
    assert caret[0] == "price > 'dear'" and caret[1] == " " * 8 + "^"
    assert box.get_attribute("aria-invalid") == "true"
    assert driver.switch_to.active_element == box
    assert find(driver, "#rows-info").text == "The filter was not applied; the rows below are unchanged."
    shot(driver, "04-filter-error")
    box.clear()
    box.send_keys("nope = 1", Keys.ENTER)
    wait(driver, text_in("#filter-error p", "Filter error at character 1"))
    find(driver, "#filter-clear").click()
    wait(driver, lambda d: find(d, "#filter-error").text == "")

    # Download: a signed link, opened.
    find(driver, "#download").click()
    link = wait(driver, visible("#download-link"))
    assert link.get_attribute("href").startswith(rest.base + "/downloads/")
    assert requests.get(link.get_attribute("href"), timeout=10).text == PRODUCTS
    deadline = time.time() + 15
    while not (downloads / "products.csv").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (downloads / "products.csv").read_text() == PRODUCTS

    # Delete, with confirmation (cancel first).
    find(driver, "#delete").click()
    dialog = wait(driver, visible("#confirm-delete"))
    assert "products.csv" in find(driver, "#confirm-text").text
    shot(driver, "05-confirm-delete")
    find(driver, "#confirm-cancel").click()
    wait(driver, EC.invisibility_of_element(dialog))
    assert http("GET", f"{rest.api}/datasources/{datasource_id}", rest.write)[0] == 200
    find(driver, "#delete").click()
    wait(driver, visible("#confirm-delete"))
    find(driver, "#confirm-yes").click()
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, f'#sources tr[data-id="{datasource_id}"]'))
    assert not find(driver, "#source-view").is_displayed()
    assert http("GET", f"{rest.api}/datasources/{datasource_id}", rest.write)[0] == 404
    no_alert(driver)
    # The API's 4xx answers (the bad key, the bad filters) are logged by the browser; nothing else is.
    errors = [e for e in console_errors(driver) if "Failed to load resource" not in e]
    assert not errors, errors


def test_hostile_cells_and_names_are_text(rest, driver):
    content = f'name,payload\nscript,"{SCRIPT_CELL}"\nimg,"{IMG_CELL.replace(chr(34), chr(34) * 2)}"\n'
    reply = requests.post(f"{rest.api}/datasources", headers={"Authorization": f"Bearer {rest.write}"},
                          files={"file": (HOSTILE_NAME, content)}, timeout=30)
    assert reply.status_code == 201, reply.text
    datasource_id = reply.json()["datasourceId"]
    wait(driver, lambda d: status_of(d, datasource_id) == "completed")
    listed = find(driver, f'#sources tr[data-id="{datasource_id}"] th a')
    assert listed.text == HOSTILE_NAME
    listed.click()
    wait(driver, text_in("#rows-info", "Rows 1–2 of 2"))
    assert column_values(driver, 1) == [SCRIPT_CELL, IMG_CELL]
    assert find(driver, "#source-title").text == HOSTILE_NAME
    samples = find(driver, "#columns tbody tr:nth-child(2) td.samples").text
    assert SCRIPT_CELL in samples and IMG_CELL in samples
    time.sleep(0.5)
    no_alert(driver)
    injected = driver.execute_script(
        "return document.querySelectorAll('main img, main script, main iframe, main [onerror]').length")
    assert injected == 0
    shot(driver, "06-hostile-cells")
    assert not [e for e in console_errors(driver) if "Content Security Policy" in e]


def test_drop_a_file_and_open_it_by_keyboard(rest, driver):
    driver.get(rest.base + "/")
    wait(driver, text_in("#live-text", "Live"))
    # A drop as the browser delivers it (selenium cannot drag from the desktop).
    driver.execute_script("""
        const transfer = new DataTransfer();
        transfer.items.add(new File(['city,population\\nLyon,522000\\nNantes,320000\\n'], 'dropped.csv', {type: 'text/csv'}));
        const zone = document.getElementById('drop');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""")
    datasource_id = wait(driver, lambda d: row_id_of(d, "dropped.csv"))
    wait(driver, lambda d: status_of(d, datasource_id) == "completed")
    # Keyboard only: focus the link, Enter opens the source, its heading takes the focus.
    driver.execute_script("arguments[0].focus()", find(driver, f'#sources tr[data-id="{datasource_id}"] th a'))
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(driver, text_in("#rows-info", "Rows 1–2 of 2"))
    assert driver.switch_to.active_element.get_attribute("id") == "source-title"
    assert column_values(driver, 0) == ["Lyon", "Nantes"]
    # The confirmation dialog is keyboard operable: Escape cancels, nothing is deleted.
    find(driver, "#delete").send_keys(Keys.ENTER)
    wait(driver, visible("#confirm-delete"))
    assert driver.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(driver, EC.invisibility_of_element_located((By.CSS_SELECTOR, "#confirm-delete")))
    assert http("GET", f"{rest.api}/datasources/{datasource_id}", rest.write)[0] == 200


def test_readable_on_a_phone_and_keyboard_operable(rest, driver):
    driver.set_window_size(390, 844)
    driver.get(rest.base + "/")
    wait(driver, visible("#list-view"))
    wait(driver, visible("#sources tbody tr"))
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    shot(driver, "07-phone")
    # The first Tab reaches the skip link, which is then shown.
    find(driver, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("class") == "skip"
    outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus is visible"
    driver.set_window_size(1280, 1500)
