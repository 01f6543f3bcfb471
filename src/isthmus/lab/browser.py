"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver: the dashboard's browser tests
and bench/ui.py. Nothing is downloaded: both binaries come from the packages scripts/bootstrap installs."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Root needs --no-sandbox; the rest keep Chromium off the network this machine does not have, and the lab's
# controller presents a certificate of the lab's own CA.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--ignore-certificate-errors")  # fmt: skip


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[WebDriver]:
    """A headless Chromium with an empty profile of its own, quit and removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="isthmus-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: WebDriver, base: str, token: str) -> None:
    """The login page, a token typed in and sent, as a person would; returns once the answer has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    driver.get(f"{base}/ui/login")
    form = driver.find_element(By.CSS_SELECTOR, "form[action='/ui/login']")
    driver.find_element(By.ID, "token").send_keys(token)
    form.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(driver, 10).until(
        lambda d: not d.find_elements(By.ID, "token") or d.find_elements(By.CLASS_NAME, "error")
    )


def text_at(driver: WebDriver, css: str) -> str:
    """An element's text read in one script: the live part may be replaced between two WebDriver calls."""
    found = driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)
    return str(found)


def attribute_at(driver: WebDriver, css: str, name: str) -> str | None:
    script = "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;"
    found = driver.execute_script(script, css, name)
    return None if found is None else str(found)


def mark_page(driver: WebDriver) -> None:
    """A value on this page's window: gone if the page is ever reloaded."""
    driver.execute_script("window.isthmusMark = 'still the same page';")


def same_page(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.isthmusMark === 'still the same page';"))


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """`app` served on 127.0.0.1:`port` until stop(); start() again serves it on the same port."""

    app: Any
    port: int
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ui-test-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
            self.server = self.thread = None
