"""The dashboard in Debian's headless Chromium against a controller served on loopback: log in, every page
(screenshots in the artefact folder), the page updating itself, a stream that drops and comes back, a token
revoked while the page is open, another tenant's connection, a narrow window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from isthmus.lab.browser import (
    Served,
    attribute_at,
    chromium,
    free_port,
    log_in,
    mark_page,
    same_page,
    screenshot,
    text_at,
)
from isthmus.store import tokens
from tests.conftest import Controller
from tests.support import wait_for
from tests.ui.test_pages import CONNECTION, _world

pytestmark = pytest.mark.parametrize("controller", ["sqlite"], indirect=True)


@pytest.fixture
def served(seeded: Controller) -> Iterator[Served]:
    _world(seeded)
    served = Served(seeded.client.app, free_port())
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def text_of(driver: WebDriver, element_id: str) -> str:
    return text_at(driver, f"#{element_id}")


def test_every_page_as_the_operator_live_and_reconnecting(
    seeded: Controller, served: Served, browser: WebDriver, artifacts: Path
) -> None:
    log_in(browser, served.base, seeded.operator)
    assert browser.current_url.endswith("/ui/fabric")
    wait_for(lambda: text_of(browser, "live-status") == "Live", 10)
    for page in ("fabric", "connections", "events", "placement"):
        browser.get(f"{served.base}/ui/{page}")
        wait_for(lambda: text_of(browser, "live-status") == "Live", 10)
        screenshot(browser, artifacts, f"operator-{page}")
    browser.get(f"{served.base}/ui/placement?drain=gw1")
    assert "Draining gw1 would move" in text_at(browser, "#live")
    browser.get(f"{served.base}/ui/connection?id={CONNECTION}")
    assert "Connected" in text_at(browser, "#live")
    screenshot(browser, artifacts, "operator-connection")

    browser.get(f"{served.base}/ui/fabric")
    wait_for(lambda: text_of(browser, "live-status") == "Live", 10)
    mark_page(browser)
    row = "tr[data-gateway='gw1']"
    assert attribute_at(browser, row, "data-role") == "active"
    moved = seeded.admin("POST", "/gateways/gw1/drain")
    assert moved.status_code in (200, 202), moved.text
    wait_for(lambda: "Draining" in text_at(browser, row), 5)
    assert same_page(browser)

    served.stop()
    wait_for(lambda: "lost" in text_of(browser, "live-status"), 10)
    screenshot(browser, artifacts, "operator-stream-lost")
    served.start()
    wait_for(lambda: text_of(browser, "live-status") == "Live", 15)
    assert same_page(browser)

    browser.set_window_size(420, 800)
    screenshot(browser, artifacts, "operator-fabric-narrow")


def test_the_keyboard_reaches_the_content_and_every_page(
    seeded: Controller, served: Served, browser: WebDriver
) -> None:
    log_in(browser, served.base, seeded.operator)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(lambda: browser.switch_to.active_element.get_attribute("id") == "main", 5)
    browser.get(f"{served.base}/ui/fabric")  # from the top again: the skip link, the brand, then the pages in order
    seen: list[str] = []
    for _ in range(8):  # a key pressed while the page still settles may leave the focus on the body: not counted
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.tag_name != "body":
            seen.append(browser.switch_to.active_element.text)
        if seen[-1:] == ["Connections"]:
            break
    assert seen == ["Skip to content", "isthmus", "Fabric", "Connections"], seen
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(lambda: browser.current_url.endswith("/ui/connections"), 5)


def test_a_revoked_token_goes_back_to_the_login_page(seeded: Controller, served: Served, browser: WebDriver) -> None:
    token = tokens.create(seeded.engine, "operator", "operator")
    log_in(browser, served.base, token)
    wait_for(lambda: text_of(browser, "live-status") == "Live", 10)
    assert tokens.revoke(seeded.engine, token.split("_")[1])
    wait_for(lambda: "/ui/login" in browser.current_url, 20)
    assert "no longer valid" in browser.find_element(By.TAG_NAME, "main").text


def test_a_tenant_sees_its_own_connection_and_another_tenants_is_the_404_page(
    seeded: Controller, served: Served, browser: WebDriver, artifacts: Path
) -> None:
    log_in(browser, served.base, seeded.tenant_a)
    assert browser.current_url.endswith("/ui/connections")
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-connection='conn']")
    screenshot(browser, artifacts, "tenant-connections")
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/logout'] button").click()
    log_in(browser, served.base, seeded.tenant_b)
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-connection='conn']")
    browser.get(f"{served.base}/ui/connection?id={CONNECTION}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "conn" not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, artifacts, "tenant-not-found")
    browser.get(f"{served.base}/ui/fabric")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
