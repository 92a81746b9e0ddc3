"""``fraudscore console`` in a real browser (Debian's headless Chromium through selenium) over the Bigtable emulator.

The console runs as the real command in a child process on a free loopback port; the cases are written as
the stream writes them (:func:`tests.support.open_cases`) into the session's default tables, which is what
``fraudscore cases`` reads too, so every test keeps to its own card ids (a tag) and filters the queue by card.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cases.casebook import Casebook
from cases.records import Case
from cases.store import CaseStore
from fraudscore.config import Resources
from stream.rules import TX_ANOMALY
from tests.support import open_cases

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")  # explicit: selenium-manager never downloads a driver
TOKEN = "console-test-token-" + uuid.uuid4().hex
WAIT_S = 20.0


@dataclass
class Console:
    url: str
    process: subprocess.Popen[str]


def start_console(token_file: Path) -> Console:
    argv = [sys.executable, "-m", "fraudscore.cli", "console", "--port", "0", "--token-file", str(token_file)]
    argv += ["--refresh", "0.5", "--poll", "1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"console listening on (http://\S+)", process.stdout.readline())
        if match:
            return Console(match.group(1), process)
    process.kill()
    pytest.fail(f"the console did not start: {process.stdout.read()}")


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def console(emulators: object, resources: Resources, token_file: Path) -> Iterator[Console]:
    running = start_console(token_file)
    yield running
    running.process.terminate()
    running.process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def store(emulators: object, resources: Resources) -> Iterator[CaseStore]:
    with CaseStore(resources) as case_store:
        yield case_store


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def make_case(store: CaseStore, tag: str) -> Callable[..., str]:
    """Writes one card's flagged transactions as the stream does; returns the case id."""

    def make(*, card: str = "", merchant: str = "m-1", members: int = 2, start: datetime | None = None) -> str:
        when = start or datetime(2033, 1, 1, tzinfo=UTC) + timedelta(hours=int(tag, 16) % 100_000)
        flagged = [
            Case(
                f"{tag}-tx-{uuid.uuid4().hex[:6]}-{i}",
                card or f"{tag}-card",
                merchant,
                when + timedelta(seconds=10 * i),
                12.5 + i,
                2.0 + i,
                1.0,
                3,
                (TX_ANOMALY,),
                top_features=(("V14", 0.6), ("Amount", 0.2)),
                raw_features=(-9.5, 12.5 + i),
                feature_names=("V14", "Amount"),
            )
            for i in range(members)
        ]
        written = open_cases(store, flagged)
        (case_id,) = {c.episode_id for c in written.values()}
        return case_id

    return make


def login(browser: WebDriver, console: Console, *, token: str = TOKEN, name: str = "alice") -> None:
    browser.delete_all_cookies()
    browser.get(console.url + "login")
    browser.find_element(By.ID, "analyst").send_keys(name)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    # The form's answer: the queue with the analyst's name, or the login page again with the reason.
    wait_for(browser, lambda b: b.find_elements(By.ID, "who") or b.find_elements(By.ID, "login-error"))


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], object]) -> object:
    # A click on a form button navigates: elements of the page before it go stale, those after it are not there yet.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.2, ignored_exceptions=ignored).until(condition)


def open_queue_for(browser: WebDriver, console: Console, card: str) -> None:
    browser.get(f"{console.url}?card={card}")


def test_queue_case_page_and_a_fraud_decision_reach_bigtable_and_the_cli(
    console: Console, browser: WebDriver, make_case: Callable[..., str], store: CaseStore, tag: str
) -> None:
    case_id = make_case(members=3)
    login(browser, console)
    open_queue_for(browser, console, f"{tag}-card")
    # The console's scan runs every 0.5 s: the case shows within a poll of the queue's rows, without a reload.
    link = wait_for(browser, lambda b: b.find_elements(By.LINK_TEXT, case_id))
    assert isinstance(link, list)
    link[0].click()
    wait_for(browser, lambda b: b.find_element(By.ID, "case-id").text == case_id)
    members = browser.find_elements(By.CSS_SELECTOR, "#members tr.member")
    assert len(members) == 3
    first = members[0].text
    assert "V14 60%" in first and "-9.5" in first and "v3" in first  # explanation value and the model version
    browser.find_element(By.ID, "note").send_keys("customer confirmed")
    browser.find_element(By.ID, "mark-fraud").click()
    wait_for(browser, lambda b: "3 member(s) labelled fraud" in b.find_element(By.CLASS_NAME, "flash").text)
    assert browser.find_element(By.ID, "status").text == "closed"
    audit = browser.find_element(By.ID, "audit").text
    assert "alice" in audit and "labelled fraud (3 members); closed" in audit and "customer confirmed" in audit

    detail = Casebook(store).detail(case_id)
    assert {m.decision.verdict for m in detail.members if m.decision} == {"fraud"}
    assert all(m.decision and m.decision.analyst == "alice" for m in detail.members)
    assert detail.episode.closed_by == "alice"
    out = subprocess.run(
        [sys.executable, "-m", "fraudscore.cli", "cases", "get", case_id, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = json.loads(out)
    assert got["decision"]["verdict"] == "fraud" and got["decision"]["note"] == "customer confirmed"
    assert got["status"] == "closed"


def test_a_member_alone_is_labelled(
    console: Console, browser: WebDriver, make_case: Callable[..., str], store: CaseStore
) -> None:
    case_id = make_case(members=2)
    login(browser, console)
    browser.get(f"{console.url}cases/{case_id}")
    tx = browser.find_elements(By.CSS_SELECTOR, "#members td.tx")[1].text
    browser.find_element(By.CSS_SELECTOR, f"button[data-action=legit][data-transaction='{tx}']").click()
    wait_for(browser, lambda b: f"{tx} labelled legit" in b.find_element(By.CLASS_NAME, "flash").text)
    detail = Casebook(store).detail(case_id)
    labels = {m.case.transaction_id: m.decision.verdict if m.decision else None for m in detail.members}
    assert labels[tx] == "legit" and sum(v is None for v in labels.values()) == 1
    assert detail.episode.status == "open"  # one member's label leaves the case open


def test_a_merchant_id_holding_a_script_renders_as_text(
    console: Console, browser: WebDriver, make_case: Callable[..., str]
) -> None:
    script = "<script>alert(1)</script>"
    case_id = make_case(merchant=script, members=1)
    login(browser, console)
    browser.get(f"{console.url}cases/{case_id}")
    merchant = browser.find_element(By.CSS_SELECTOR, "#members td.merchant")
    assert merchant.text == script  # shown as the characters it is
    assert browser.find_elements(By.XPATH, "//script[contains(., 'alert(1)')]") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises when no alert is open


def test_decisions_without_the_token_are_refused(
    console: Console, browser: WebDriver, make_case: Callable[..., str], store: CaseStore
) -> None:
    case_id = make_case(members=1)
    version = Casebook(store).find(case_id).version
    decide = f"{console.url}cases/{case_id}/decide"
    form = {"action": "fraud", "version": version, "note": "no token"}
    # No session at all: refused before anything else is looked at.
    anonymous = requests.post(decide, data=form, timeout=10)
    assert anonymous.status_code == 401 and "Nothing was changed" in anonymous.text
    # A wrong token at the login: no session, the case page is not even shown.
    login(browser, console, token="not-the-token")
    assert "token: not the console's token" in browser.find_element(By.ID, "login-error").text
    browser.get(f"{console.url}cases/{case_id}")
    assert "/login" in browser.current_url
    # A session without the form's CSRF token (a cross-site form post): refused too.
    with requests.Session() as http:
        page = http.get(console.url + "login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        http.post(
            console.url + "login", data={"analyst": "eve", "token": TOKEN, "csrf_token": csrf.group(1)}, timeout=10
        )
        forged = http.post(decide, data=form, timeout=10)
        assert forged.status_code == 400 and "CSRF" in forged.text
    assert Casebook(store).find(case_id).decision is None


def test_an_unknown_case_id_is_a_404_page_naming_it(console: Console, browser: WebDriver) -> None:
    login(browser, console)
    missing = "case-<b>nope</b>"
    browser.get(f"{console.url}cases/{missing}")
    assert missing in browser.find_element(By.ID, "not-found").text
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert requests.get(f"{console.url}cases/{missing}", cookies=cookies, timeout=10).status_code == 404


def test_a_stale_decision_is_a_conflict_and_overwrites_nothing(
    console: Console, browser: WebDriver, make_case: Callable[..., str], store: CaseStore
) -> None:
    case_id = make_case(members=2)
    login(browser, console)
    browser.get(f"{console.url}cases/{case_id}")
    # Meanwhile another analyst labels it legit from the terminal (the same Casebook the CLI runs).
    Casebook(store).label(case_id, False, "false positive", "bob")
    browser.find_element(By.ID, "mark-fraud").click()
    conflict = wait_for(browser, lambda b: b.find_elements(By.ID, "conflict"))
    assert isinstance(conflict, list)
    assert "changed since it was read" in conflict[0].text and "nothing was written" in conflict[0].text
    detail = Casebook(store).detail(case_id)
    assert detail.episode.decision is not None and detail.episode.decision.verdict == "legit"
    assert {m.decision.verdict for m in detail.members if m.decision} == {"legit"}
    # The page now shows the current version: deciding again from it works.
    assert browser.find_element(By.ID, "decision").text.startswith("legit by bob")


def test_close_and_reopen_with_notes_in_the_audit_trail(
    console: Console, browser: WebDriver, make_case: Callable[..., str], store: CaseStore
) -> None:
    case_id = make_case(members=1)
    login(browser, console, name="carol")
    browser.get(f"{console.url}cases/{case_id}")
    browser.find_element(By.ID, "note").send_keys("called the cardholder")
    browser.find_element(By.ID, "add-note").click()
    wait_for(browser, lambda b: "note added" in b.find_element(By.CLASS_NAME, "flash").text)
    browser.find_element(By.ID, "close").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "status").text == "closed")
    browser.find_element(By.ID, "reopen").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "status").text == "open")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert [r.split()[3] for r in rows] == ["note", "closed", "reopened"]
    assert "called the cardholder" in rows[0] and all("carol" in r for r in rows)
    assert Casebook(store).find(case_id).status == "open"


def test_a_new_case_appears_in_an_open_queue_without_a_reload(
    console: Console, browser: WebDriver, make_case: Callable[..., str], tag: str
) -> None:
    login(browser, console)
    open_queue_for(browser, console, f"{tag}-card")
    assert "no open cases matching the filters" in browser.find_element(By.ID, "empty").text
    url = browser.current_url
    case_id = make_case(members=1)
    wait_for(browser, lambda b: b.find_elements(By.LINK_TEXT, case_id))
    assert browser.current_url == url


def test_the_overview_shows_the_chart(console: Console, browser: WebDriver) -> None:
    login(browser, console)
    browser.get(console.url + "overview")
    chart = browser.find_element(By.ID, "chart")
    wait_for(browser, lambda b: b.execute_script("return arguments[0].naturalWidth", chart) > 0)
    assert "open" in browser.find_element(By.TAG_NAME, "main").text


def test_sigterm_stops_the_console_and_its_scanning_process(emulators: object, token_file: Path) -> None:
    running = start_console(token_file)
    assert requests.get(running.url + "health", timeout=10).text == "ok\n"
    scanner = children_of(running.process.pid)
    assert scanner, "the queue's scanning child process is missing"
    running.process.terminate()
    assert running.process.wait(timeout=20) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in scanner) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in scanner), f"left behind: {scanner}"
