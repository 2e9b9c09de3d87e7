"""The audit page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) labels rows with the keyboard, writes a note, reloads
and resumes, shows hostile row text as text, and shows the figures summary.json holds."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from pipeline.auditing.server import create_app
from pipeline.auditing.session import AuditSession
from tests.auditing.test_audit import TRAP, make_run

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page(tmp_path, gsm8k_train):
    """(driver, url, session): the page of a 36-row run, served on 127.0.0.1."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver (.ci/run does)")
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    session = AuditSession(make_run(tmp_path, gsm8k_train), size=36, seed=1)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(session), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)
    try:
        yield driver, f"http://127.0.0.1:{port}/", session
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)


def _wait_text(driver, element_id: str, expected: str, timeout: float = 15) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: expected in d.find_element(By.ID, element_id).text)
    return driver.find_element(By.ID, element_id).text


def _press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()
        time.sleep(0.15)  # each label is saved before the page moves on


@pytest.mark.slow
def test_label_with_the_keyboard_reload_and_resume(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, url, session = page
    driver.get(url)
    _wait_text(driver, "progress", "0 / 36 labelled by me")
    assert _wait_text(driver, "position", "1 of 36")
    _press(driver, "1", "3", "2")  # right, wrong, partial: each moves on
    _wait_text(driver, "progress", "3 / 36 labelled")
    _wait_text(driver, "position", "4 of 36")
    _press(driver, Keys.ARROW_LEFT, "n")
    driver.switch_to.active_element.send_keys("half of the steps", Keys.ENTER)
    time.sleep(0.5)
    saved = (session.run_dir / "audit" / "labels.jsonl").read_text()
    labels = [json.loads(line) for line in saved.splitlines()]
    assert [r["label"] for r in labels] == ["right", "wrong", "partial", "partial"]
    assert labels[-1]["note"] == "half of the steps" and labels[-1]["id"] == session.sample.ids[2]

    driver.refresh()  # resumes at the first row without a label
    _wait_text(driver, "progress", "3 / 36 labelled")
    _wait_text(driver, "position", "4 of 36")
    # The page's figures are summary.json's.
    figures = json.loads((session.run_dir / "summary.json").read_text())["audit"]
    for source, group in [*figures["by_source"].items(), ("non-gold", figures["non_gold"])]:
        cells = driver.find_element(By.CSS_SELECTOR, f"#figures tr[data-source='{source}']").text
        shown = "–" if group["precision"] is None else f"{100 * group['precision']:.1f} %"
        assert cells.startswith(f"{source} {shown}"), cells
        assert f"{group['labelled']} of {group['rows']}" in cells


@pytest.mark.slow
def test_hostile_row_text_is_shown_as_text(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, url, session = page
    trap = next(i for i, row_id in enumerate(session.sample.ids) if TRAP in session.by_id[row_id].target)
    driver.get(url)
    _wait_text(driver, "position", "1 of 36")
    _press(driver, *[Keys.ARROW_RIGHT] * trap)
    shown = _wait_text(driver, "target-text", "<img src=x onerror=")
    assert TRAP in shown
    assert driver.find_elements(By.CSS_SELECTOR, "#target-text img, #target-text script") == []
    assert driver.execute_script("return window.hacked === undefined")
