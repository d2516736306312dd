"""The web console in a real headless browser (Debian's chromium + chromium-driver through Selenium),
served over HTTPS by the real uvicorn server on a free port, over a real engine and store.

Screenshots of the main pages go to a temporary folder (printed; set NASNAME_SCREENSHOTS to keep them
somewhere). Skipped, with the reason, only where the browser or its driver is not installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.dedup.service import DedupService
from engine.engine import Engine
from engine.ops.backup import create_backup
from engine.ops.schedule import record_good_backup
from server.auth import Role
from server.tls import make_self_signed
from server.web.app import create_app
from server.web.config import WebConfig
from server.web.serving import WebServer
from tests.web_support import PASSWORD, add_pending, add_users, open_engine, seed_gallery

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="browser tests need Debian's chromium and chromium-driver "
           "(apt-get install chromium chromium-driver)")

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@dataclass
class Console:
    engine: Engine
    url: str
    shots: Path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = tmp_path_factory.mktemp("web")
    engine = open_engine(base / "data")
    seed_gallery(engine)
    add_users(engine)
    cert, key = make_self_signed(["127.0.0.1"])
    (base / "c.pem").write_bytes(cert)
    (base / "k.pem").write_bytes(key)
    dedup = DedupService(engine.gallery)  # the gallery's models have no calibration: coarse defaults
    server = WebServer(create_app(engine, WebConfig(), dedup=dedup), "127.0.0.1", 0, base / "c.pem",
                       base / "k.pem")
    server.start()
    shots = Path(os.environ.get("NASNAME_SCREENSHOTS") or tempfile.mkdtemp(prefix="nasname-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots in {shots}")
    try:
        yield Console(engine, server.url.rstrip("/"), shots)
    finally:
        server.stop()
        dedup.close()
        engine.close()


def _browser(profile: Path) -> WebDriver:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1366,768"):
        options.add_argument(flag)
    options.accept_insecure_certs = True  # the console's self-signed test certificate
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.set_window_size(1366, 768)
    driver.implicitly_wait(5)
    return driver


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = _browser(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def _navigates(b: WebDriver, act: Callable[[], object]) -> None:
    """Do ``act`` (a click or key that loads a page) and wait until the new page has replaced the old."""
    old = b.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(b, 20).until(staleness_of(old))


def _login(b: WebDriver, c: Console, username: str, then: str = "/") -> None:
    b.get(c.url + "/login?next=" + then)
    b.find_element(By.ID, "username").send_keys(username)
    password = b.find_element(By.ID, "password")
    _navigates(b, lambda: password.send_keys(PASSWORD + Keys.ENTER))  # the next page, not the login form


def test_adjudicator_decides_a_case(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    b.get(c.url + "/queue")
    assert "/login" in b.current_url  # logged out: redirected
    _login(b, c, "adjudicator", "/queue")
    assert b.find_element(By.TAG_NAME, "h1").text.startswith("Adjudication queue")
    b.save_screenshot(str(c.shots / "queue.png"))
    _navigates(b, b.find_element(By.LINK_TEXT, "R-2").click)
    images = b.find_elements(By.CSS_SELECTOR, "table.side img")
    assert len(images) == 10  # face, two irises and two unwrapped strips, for both people
    for img in images:  # every image really loaded (naturalWidth > 0), not a broken link
        assert b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0, \
            img.get_attribute("src")
    b.save_screenshot(str(c.shots / "case.png"))
    # keyboard: D selects "different persons" and moves to the reason; nothing is recorded yet
    b.find_element(By.TAG_NAME, "body").send_keys("d")
    assert b.find_element(By.ID, "decision-distinct").is_selected()
    assert b.switch_to.active_element.get_attribute("id") == "reason"
    b.switch_to.active_element.send_keys("different eye shape and iris texture")
    _navigates(b, b.find_element(By.CSS_SELECTOR, "#decide button[type=submit]").click)
    assert "Confirm your decision" in b.find_element(By.TAG_NAME, "h1").text
    assert c.engine.get("R-2").status.value == "pending"
    b.save_screenshot(str(c.shots / "confirm.png"))
    _navigates(b, b.find_element(By.ID, "confirm").click)
    assert "is now active" in b.find_element(By.CSS_SELECTOR, ".flash").text
    assert c.engine.get("R-2").status.value == "active"
    history = b.find_element(By.CSS_SELECTOR, "table.history").text
    assert "adjudicated" in history and "adjudicator" in history  # the audit row, with who
    b.save_screenshot(str(c.shots / "decided.png"))


def test_record_page_shows_status_and_audit(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    _login(b, c, "investigator", "/record")
    box = b.find_element(By.ID, "ref")
    box.send_keys("R-1" + Keys.ENTER)
    assert b.find_element(By.ID, "record-status").text == "active"
    rows = b.find_elements(By.CSS_SELECTOR, "table.history tr[data-action]")
    assert any(r.get_attribute("data-action") == "insert" for r in rows)
    b.save_screenshot(str(c.shots / "record.png"))


def test_station_cannot_open_adjudication(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    _login(b, c, Role.STATION.value, "/case/R-4")
    assert "may not open this page" in b.find_element(By.CSS_SELECTOR, ".error").text
    assert not b.find_elements(By.CSS_SELECTOR, "table.side img")
    b.get(c.url + "/queue")
    assert "may not open this page" in b.find_element(By.CSS_SELECTOR, ".error").text


def test_post_without_csrf_is_refused(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    _login(b, c, "adjudicator", "/case/R-4")
    b.execute_script("document.querySelector('#decide input[name=csrf]').remove()")
    b.find_element(By.ID, "decision-distinct").click()
    b.find_element(By.ID, "reason").send_keys("an attempt without the token")
    _navigates(b, b.find_element(By.CSS_SELECTOR, "#decide button[type=submit]").click)
    assert "security token" in b.find_element(By.CSS_SELECTOR, ".error").text
    assert c.engine.get("R-4").status.value == "pending"
    # logging out ends the session: the case page sends the browser back to the login page
    b.get(c.url + "/case/R-4")
    _navigates(b, b.find_element(By.CSS_SELECTOR, "form.logout button").click)
    b.get(c.url + "/case/R-4")
    assert "/login" in b.current_url


def test_admin_pages(console: Console, browser: WebDriver, tmp_path: Path) -> None:
    b, c = browser, console
    _login(b, c, "admin", "/health")
    assert b.find_element(By.TAG_NAME, "h1").text == "Service health"
    assert b.find_element(By.ID, "backup-none").is_displayed()
    result = create_backup(c.engine.gallery, tmp_path / "backups", config=c.engine.config)
    record_good_backup(c.engine.datadir, result)
    _navigates(b, b.refresh)
    backup = b.find_element(By.ID, "backup").text
    assert result.path.name in backup and "0 min" in b.find_element(By.ID, "backup-age").text
    assert "No peer sites yet" in b.find_element(By.ID, "transfers").text
    b.save_screenshot(str(c.shots / "health.png"))
    _navigates(b, b.find_element(By.LINK_TEXT, "Accounts").click)
    assert "station" in b.find_element(By.CSS_SELECTOR, "table.grid").text
    b.save_screenshot(str(c.shots / "accounts.png"))


def test_reports_for_investigators_only(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    _login(b, c, "investigator", "/reports")
    Select(b.find_element(By.ID, "partition")).select_by_value("camp-a")
    _navigates(b, b.find_element(By.ID, "build").click)
    assert "partition: camp-a" in b.find_element(By.ID, "built-title").text
    assert "report.html" in b.find_element(By.ID, "report-files").text
    b.save_screenshot(str(c.shots / "reports.png"))
    b.find_element(By.CSS_SELECTOR, "details.tables summary").click()  # the CSV tables fold out
    csvs = [a for a in b.find_elements(By.CSS_SELECTOR, "ul.csv a") if a.is_displayed()]
    assert csvs and all(a.text.endswith(".csv") for a in csvs)
    frame = b.find_element(By.ID, "report-frame")
    assert frame.get_attribute("sandbox") == ""  # sandboxed: no script, no same-origin access
    b.switch_to.frame(frame)
    assert b.find_element(By.TAG_NAME, "h1").text.startswith("Registration report")
    assert "partition: camp-a" in b.find_element(By.CSS_SELECTOR, "p.period").text
    b.switch_to.default_content()
    _navigates(b, b.find_element(By.CSS_SELECTOR, "form.logout button").click)
    _login(b, c, Role.STATION.value, "/reports")
    assert "may not open this page" in b.find_element(By.CSS_SELECTOR, ".error").text
    assert not b.find_elements(By.LINK_TEXT, "Reports")


def test_investigator_starts_a_dedup_job(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    _login(b, c, "investigator", "/dedup")
    _navigates(b, b.find_element(By.ID, "new-job").click)
    Select(b.find_element(By.ID, "dedup-partition")).select_by_value("camp-b")
    b.find_element(By.ID, "threshold-fmr").click()
    value = b.find_element(By.ID, "dedup-value")
    value.clear()
    value.send_keys("0.0001")
    b.save_screenshot(str(c.shots / "dedup_new.png"))
    _navigates(b, b.find_element(By.ID, "dedup-start").click)
    assert "Started dedup job" in b.find_element(By.CSS_SELECTOR, ".flash").text
    job_id = b.current_url.rsplit("/", 1)[1]
    c_dedup = [p for p in c.engine.datadir.jobs_dir("dedup").iterdir() if p.name == job_id]
    assert c_dedup, "the job exists in the data directory's dedup folder"
    _navigates(b, b.find_element(By.LINK_TEXT, "Dedup jobs").click)
    assert job_id in b.find_element(By.TAG_NAME, "main").text


def test_queue_pages_by_keyboard(console: Console, browser: WebDriver) -> None:
    b, c = browser, console
    add_pending(c.engine, 30, partition="camp-q")
    _login(b, c, "adjudicator", "/queue")
    # keyboard alone: choose the partition and page size, apply, then follow "Next"
    Select(b.find_element(By.ID, "partition")).select_by_value("camp-q")
    Select(b.find_element(By.ID, "size")).select_by_value("25")
    _navigates(b, lambda: b.find_element(By.ID, "size").send_keys(Keys.TAB, Keys.ENTER))
    assert "30 open cases in camp-q" in b.find_element(By.ID, "queue-total").text
    assert b.find_element(By.ID, "page-info").text == "Page 1 of 2 · cases 1–25 of 30"
    assert len(b.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")) == 25
    _navigates(b, lambda: b.find_element(By.ID, "page-next").send_keys(Keys.ENTER))
    assert b.find_element(By.ID, "page-info").text == "Page 2 of 2 · cases 26–30 of 30"
    rows = b.find_elements(By.CSS_SELECTOR, "table.grid tbody tr td:first-child")
    assert [r.text for r in rows] == [f"Q-{i:03d}" for i in range(25, 30)]
    assert Select(b.find_element(By.ID, "partition")).first_selected_option.text == "camp-q"
    b.save_screenshot(str(c.shots / "queue_page2.png"))
