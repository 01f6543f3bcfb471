"""The dashboard against the lab, in Debian's headless Chromium: a gateway killed while the fabric page is open,
and the page showing the standby take over without a reload; the failover told as one story; the connection's
page; another tenant's connection is the 404 page. Screenshots go to the test artefact folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from isthmus.lab import fabric, faults
from isthmus.lab.browser import attribute_at, chromium, log_in, mark_page, same_page, screenshot, text_at
from isthmus.lab.tenant import Tenant, tenant_token
from tests.support import ON_PREMISES, gateway_tenant, wait_for
from tests.ui.conftest import ARTIFACTS

SUB_A = "00000000-0000-0000-0000-0000000000a9"
SUB_B = "00000000-0000-0000-0000-0000000000b9"


@pytest.fixture(scope="module")
def tenant(gateway_lab: fabric.LabState) -> Tenant:
    """Tenant A's VNet gateway with a GRE connection (ready as soon as its gateway side is: no site needed)."""
    t, _vm, _vip = gateway_tenant(gateway_lab, SUB_A, "d", "h1")
    t.local_gateway("onprem", "198.51.100.61", [ON_PREMISES])
    t.gre_connection("to-onprem", "gw", "onprem", key=61)
    t.wait_connection("to-onprem", timeout=30)
    return t


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def _row(gateway: str) -> str:
    return f"tr[data-gateway='{gateway}']"


def test_the_fabric_page_shows_the_standby_take_over_without_a_reload(
    gateway_lab: fabric.LabState, tenant: Tenant, browser: WebDriver
) -> None:
    placement = gateway_lab.operator().get("/admin/placement").json()
    vnet_gateway = tenant.id("virtualNetworkGateways/gw").lower()
    carrier = next(p for p in placement["placed"] if p["virtualNetworkGateway"].lower() == vnet_gateway)
    pool = next(p for p in placement["pools"] if p["name"] == carrier["pool"])
    standby = next(g["name"] for g in pool["gateways"] if g["role"] == "standby")
    log_in(browser, gateway_lab.controller, gateway_lab.operator_token)
    wait_for(lambda: text_at(browser, "#live-status") == "Live", 10)
    assert attribute_at(browser, _row(carrier["gateway"]), "data-role") == "active"
    assert attribute_at(browser, _row(standby), "data-role") == "standby"
    screenshot(browser, ARTIFACTS, "lab-fabric-before-failover")
    mark_page(browser)

    faults.kill_node(gateway_lab.topology.netns(carrier["node"]))
    wait_for(lambda: attribute_at(browser, _row(standby), "data-role") == "active", 10)
    wait_for(lambda: attribute_at(browser, _row(carrier["gateway"]), "data-liveness") == "Failed", 5)
    assert same_page(browser)
    screenshot(browser, ARTIFACTS, "lab-fabric-after-failover")

    browser.get(f"{gateway_lab.controller}/ui/events")
    wait_for(lambda: f"failover of {carrier['gateway']}" in text_at(browser, "#live"), 10)
    # the story grows on the open page: the connection reported Connected by the node that took it over
    wait_for(lambda: f"on {standby}" in text_at(browser, "article.story"), 30)
    story = text_at(browser, "article.story")
    assert f"{standby} is active" in story and "-> Connected" in story, story
    screenshot(browser, ARTIFACTS, "lab-events-failover-story")

    browser.get(f"{gateway_lab.controller}/ui/connection?id={tenant.id('connections/to-onprem')}")
    wait_for(lambda: "Connected" in text_at(browser, "#live"), 10)
    screenshot(browser, ARTIFACTS, "lab-connection")


def test_another_tenant_gets_the_404_page_for_the_connection(
    gateway_lab: fabric.LabState, tenant: Tenant, browser: WebDriver
) -> None:
    connection = f"{gateway_lab.controller}/ui/connection?id={tenant.id('connections/to-onprem')}"
    log_in(browser, gateway_lab.controller, tenant_token(gateway_lab, SUB_A))
    browser.get(connection)
    assert "to-onprem" in text_at(browser, "#live")
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/logout'] button").click()
    log_in(browser, gateway_lab.controller, tenant_token(gateway_lab, SUB_B))
    browser.get(connection)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "to-onprem" not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, ARTIFACTS, "lab-tenant-b-not-found")
