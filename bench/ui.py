"""Benchmark of the dashboard (/ui/). Measured:

  - fabric_page_ms_p50: the server's time to gather and render /ui/fabric (its `Server-Timing: render;dur=`),
    at 100 gateways (4 pools of 25, 1 standby each) and 1,000 IPsec connections (10 subscriptions x 20 VNet
    gateways x 5 connections), every gateway node registered and reporting its connections Connected with
    byte counters; the p50 of 30 GETs (10 with --quick), target <= 100. Also the whole request as the client
    sees it, and /ui/connections (1,000 rows) at that size (no target).
    Baseline in the same run: GET /admin/placement, the JSON the page's main part is built from.
  - event_to_screen_ms_p50: a gateway's serviceState changed by the operator API (POST /admin/gateways/{name}/drain,
    then /undrain, alternately, on a pool's standby: it carries nothing, so its drain ends OutOfService at once
    and nothing moves) -> the change in the DOM of /ui/fabric open in headless Chromium, on the same world,
    served on loopback by uvicorn (lab/browser.py's Served). A MutationObserver in the page records Date.now()
    when the gateway's row shows the new state; the clock is the same machine's as time.time() taken just before
    the API call. 10 changes (4 with --quick), target <= 1,000.
    Baseline in the same run: the same change seen by polling GET /admin/gateways/{name} every 10 ms.
The world: a controller (create_app, its lifespan running) on a fresh SQLite store in a temporary folder, spoken
to in-process (TestClient); operator objects through the operator API; each subscription's resources in one
write through the ARM PUT's own code (service.put), then the placement that write triggers; the pages and the
browser over loopback HTTP.
Prints a table, then one JSON object as the last line. `--quick`: fewer repetitions, under a minute.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from isthmus import sealing
from isthmus.api.app import create_app
from isthmus.api.arm import service
from isthmus.api.arm.kinds import BY_COLLECTION
from isthmus.api.deps import write
from isthmus.api.preconditions import ALWAYS
from isthmus.api.state import State
from isthmus.model.ids import ResourceId
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from table import finish

POOLS = 4
GATEWAYS_PER_POOL = 25  # 100 gateways
SUBSCRIPTIONS = 10
VNET_GATEWAYS_PER_SUBSCRIPTION = 20
CONNECTIONS_PER_VNET_GATEWAY = 5  # 10 x 20 x 5 = 1,000 connections
HOSTS = 4
MUXES = 2
TIER_KBPS = 100_000  # the Standard SKU's tier: what each connection takes on its gateway
GATEWAY_CAPACITY_KBPS = 10_000_000  # 100 connections a gateway: 1,000 over 96 actives place with room to spare


def subscription(index: int) -> str:
    return f"00000000-0000-4000-8000-{0xB0 + index:012x}"


def arm_id(sub: str, collection: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/{collection}/{name}"


@dataclass
class World:
    client: TestClient
    operator: str
    gateways: int
    connections: int
    placed: int
    unplaced: int
    build_s: float

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response: httpx.Response = self.client.request(
            method, f"/admin{path}", json=body, headers=bearer(self.operator)
        )
        return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(response: httpx.Response, *codes: int) -> httpx.Response:
    if response.status_code not in (codes or (200, 201)):
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                           f"{response.text[:500]}")  # fmt: skip
    return response


def _fabric(client: TestClient, operator: str) -> None:
    def put(path: str, properties: dict[str, Any]) -> None:
        _ok(client.put(f"/admin{path}", json={"properties": properties}, headers=bearer(operator)), 201)

    put("/publicIpPools/bench", {"addressPrefixes": ["198.19.0.0/16"]})
    for h in range(HOSTS):
        put(f"/hosts/host{h}", {"node": f"host{h}", "address": f"198.18.1.{h + 1}"})
    for m in range(MUXES):
        put(f"/loadBalancerMuxes/mux{m}", {"node": f"mux{m}", "asn": 65001 + m, "routerId": f"198.18.2.{m + 1}",
                                           "peers": [{"address": "198.18.0.1", "asn": 65000}]})  # fmt: skip
    for p in range(POOLS):
        put(f"/gatewayPools/ipsec{p}", {"type": "S2sIpsec", "redundantGatewayCount": 1,
                                        "gatewayCapacityKbps": GATEWAY_CAPACITY_KBPS,
                                        "tierBandwidthKbps": TIER_KBPS})  # fmt: skip
        for g in range(GATEWAYS_PER_POOL):
            name = f"gw{p * GATEWAYS_PER_POOL + g:03d}"
            put(f"/gateways/{name}", {"node": name, "pool": f"ipsec{p}"})


def _tenant(client: TestClient, st: State, index: int, token: str) -> None:
    """A subscription's resource group (through the API), then its sites, VNets, public IPs, VNet gateways and
    connections in one write through the code the ARM PUT runs (service.put in the controller's writer thread,
    then the placement that write triggers): ~166 PUTs one by one would take ~2 s a subscription."""
    sub = subscription(index)
    _ok(client.put(f"/subscriptions/{sub}/resourceGroups/rg", params={"api-version": "2024-11-01"},
                   json={"location": "local"}, headers=bearer(token)), 201)  # fmt: skip
    items: list[tuple[str, str, dict[str, Any]]] = []
    for k in range(CONNECTIONS_PER_VNET_GATEWAY):
        items.append(("localNetworkGateways", f"site{k}", {"properties": {
            "gatewayIpAddress": f"203.0.113.{index * CONNECTIONS_PER_VNET_GATEWAY + k + 1}",
            "localNetworkAddressSpace": {"addressPrefixes": [f"192.0.2.{16 * k}/28"]}}}))  # fmt: skip
    for v in range(VNET_GATEWAYS_PER_SUBSCRIPTION):
        vnet = arm_id(sub, "virtualNetworks", f"vnet{v}")
        pip = arm_id(sub, "publicIPAddresses", f"gwip{v}")
        vgw = arm_id(sub, "virtualNetworkGateways", f"vgw{v}")
        items.append(("virtualNetworks", f"vnet{v}", {"properties": {
            "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
            "subnets": [{"name": "GatewaySubnet", "properties": {"addressPrefix": "100.64.255.0/27"}}]}}))  # fmt: skip
        items.append(("publicIPAddresses", f"gwip{v}", {"properties": {"publicIPAllocationMethod": "Static"}}))
        items.append(("virtualNetworkGateways", f"vgw{v}", {"properties": {
            "gatewayType": "Vpn", "vpnType": "RouteBased", "sku": {"name": "Standard"},
            "ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": vnet + "/subnets/GatewaySubnet"},
                                                              "publicIPAddress": {"id": pip}}}]}}))  # fmt: skip
        for k in range(CONNECTIONS_PER_VNET_GATEWAY):
            items.append(("connections", f"vgw{v}-site{k}", {"properties": {
                "connectionType": "IPsec", "sharedKey": f"bench-psk-{index}-{v}-{k}",
                "virtualNetworkGateway1": {"id": vgw},
                "localNetworkGateway2": {"id": arm_id(sub, "localNetworkGateways", f"site{k}")}}}))  # fmt: skip

    def work() -> None:
        with write(st) as tx:
            for collection, name, body in items:
                kind = BY_COLLECTION[collection.lower()]
                request = kind.model.model_validate({"location": "local", **body})
                service.put(tx, kind, ResourceId(sub, "rg", collection, name), request, ALWAYS, st.settings.locations)

    st.writer.submit(work).result()


def _register(client: TestClient, engine: Any, node: str, role: str, address: str) -> str:
    token = tokens.create(engine, "node", node)
    _ok(client.post(f"/v1/nodes/{node}/register", json={"role": role, "address": address}, headers=bearer(token)))
    return token


def _report(client: TestClient, revision: int, nodes: dict[str, str], carried: dict[str, list[str]]) -> None:
    """Every node's heartbeat: the gateways' connections Connected with byte counters, the MUXes' sessions
    Established, the hosts' counts."""
    for n, (node, token) in enumerate(sorted(nodes.items())):
        body: dict[str, Any] = {"appliedRevision": revision}
        if node.startswith("gw"):
            body["connections"] = {c: {"connectionStatus": "Connected", "ingressBytesTransferred": 1_000 * (n + i),
                                       "egressBytesTransferred": 3_000 * (n + i)}
                                   for i, c in enumerate(carried.get(node, []))}  # fmt: skip
        elif node.startswith("mux"):
            body["sessions"] = {"198.18.0.1": "Established"}
            body["details"] = {"announced": SUBSCRIPTIONS * VNET_GATEWAYS_PER_SUBSCRIPTION}
        else:
            body["details"] = {"routers": 0, "vms": 0}
        _ok(client.post(f"/v1/nodes/{node}/status", json=body, headers=bearer(token)))


@contextmanager
def world(workdir: Path) -> Iterator[World]:
    """The controller on a fresh SQLite store in `workdir`, spoken to in-process (TestClient) with its lifespan
    running (placement, the drainer, the dashboard's throughput sampler): the fabric, the tenants, every node
    registered and reporting once."""
    started = time.perf_counter()
    engine = make_engine(f"sqlite:///{workdir / 'isthmus.db'}")
    upgrade(engine)
    key = workdir / "pki" / sealing.KEY_FILE
    sealing.write_key(key)
    app = create_app(engine, secrets_key=key)
    try:
        with TestClient(app) as client:
            operator = tokens.create(engine, "operator", "operator")
            _fabric(client, operator)
            for index in range(SUBSCRIPTIONS):
                _tenant(client, app.state.isthmus, index, tokens.create(engine, "subscription", subscription(index)))
            placement = _ok(client.get("/admin/placement", headers=bearer(operator))).json()
            carried: dict[str, list[str]] = {}
            for placed in placement["placed"]:
                carried.setdefault(placed["node"], []).extend(placed["connections"])
            nodes = {f"host{h}": _register(client, engine, f"host{h}", "host", f"198.18.1.{h + 1}")
                     for h in range(HOSTS)}  # fmt: skip
            nodes |= {f"mux{m}": _register(client, engine, f"mux{m}", "mux", f"198.18.2.{m + 1}") for m in range(MUXES)}
            for g in range(POOLS * GATEWAYS_PER_POOL):
                nodes[f"gw{g:03d}"] = _register(client, engine, f"gw{g:03d}", "gateway", f"198.18.3.{g + 1}")
            _report(client, app.state.isthmus.revision(), nodes, carried)
            yield World(
                client=client,
                operator=operator,
                gateways=sum(len(p["gateways"]) for p in placement["pools"]),
                connections=sum(len(c) for c in carried.values()),
                placed=len(placement["placed"]),
                unplaced=len(placement["unplaced"]),
                build_s=time.perf_counter() - started,
            )
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def server_timing(response: httpx.Response) -> float:
    """The `render;dur=` of a page's Server-Timing header (ms)."""
    for metric in response.headers.get("server-timing", "").split(","):
        name, _, rest = metric.strip().partition(";")
        if name == "render" and rest.startswith("dur="):
            return float(rest[4:])
    raise RuntimeError(f"no render duration in Server-Timing: {response.headers.get('server-timing')!r}")


def timed_gets(http: httpx.Client, path: str, count: int, seconds: float) -> tuple[list[float], list[float]]:
    """`count` GETs of `path` after two to warm up, within `seconds`: the client's ms and the Server-Timing ms."""
    client_ms: list[float] = []
    server_ms: list[float] = []
    deadline = time.monotonic() + seconds
    for index in range(count + 2):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = _ok(http.get(path), 200)
        took = (time.perf_counter() - started) * 1000
        if index >= 2:
            client_ms.append(took)
            if "server-timing" in response.headers:
                server_ms.append(server_timing(response))
    return client_ms, server_ms


def measure_pages(http: httpx.Client, quick: bool) -> dict[str, Any]:
    reps, connection_reps = (10, 5) if quick else (30, 15)
    fabric_client, fabric_server = timed_gets(http, "/ui/fabric", reps, 60)
    placement_client, _ = timed_gets(http, "/admin/placement", reps, 60)
    connections_client, connections_server = timed_gets(http, "/ui/connections", connection_reps, 90)
    fabric_p50, placement_p50 = median(fabric_client), median(placement_client)
    page = http.get("/ui/fabric").text
    return {
        "fabric_page_ms_p50": _rounded(median(fabric_server)),
        "fabric_page_ms_p90": _rounded(percentile(fabric_server, 0.9)),
        "fabric_request_ms_p50": _rounded(fabric_p50),
        "fabric_page_bytes": len(page.encode()),
        "fabric_page_rows": page.count("data-gateway="),
        "placement_api_ms_p50": _rounded(placement_p50),
        "fabric_vs_placement_ratio": round(fabric_p50 / placement_p50, 2) if fabric_p50 and placement_p50 else None,
        "connections_page_ms_p50": _rounded(median(connections_server)),
        "connections_request_ms_p50": _rounded(median(connections_client)),
        "page_samples": len(fabric_server),
    }


# Installed in the page before each change: records Date.now() once the gateway's row (re-queried: the whole of
# #live is replaced by each server-sent event) shows the wanted state. Returns whether it shows it already.
OBSERVE = """
const name = arguments[0], want = arguments[1];
const live = document.getElementById("live");
function shows() {
  const row = live.querySelector('tr[data-gateway="' + name + '"]');
  if (!row) return false;
  const text = row.textContent;
  return want === "InService" ? text.includes("InService") : text.includes("Draining") || text.includes("OutOfService");
}
if (window.benchObserver) window.benchObserver.disconnect();
window.benchSeen = null;
const already = shows();
window.benchObserver = new MutationObserver(function () {
  if (window.benchSeen === null && shows()) {
    window.benchSeen = Date.now();
    window.benchObserver.disconnect();
  }
});
window.benchObserver.observe(live, {subtree: true, childList: true, attributes: true, characterData: true});
return already;
"""
CHANGE_TIMEOUT_S = 10.0


def _change(http: httpx.Client, gateway: str, want: str) -> None:
    verb = "undrain" if want == "InService" else "drain"
    _ok(http.post(f"/admin/gateways/{gateway}/{verb}"), 200, 202)


def _settle(http: httpx.Client, gateway: str, want: str) -> None:
    """Until the API says the gateway is where the change leads (a drain of a gateway carrying nothing ends
    OutOfService at once), and the page has had a live tick to show it."""
    final = "InService" if want == "InService" else "OutOfService"
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    while time.monotonic() < deadline:
        if _ok(http.get(f"/admin/gateways/{gateway}"), 200).json()["properties"].get("serviceState") == final:
            break
        time.sleep(0.05)
    time.sleep(0.5)


def _wanted(want: str) -> Callable[[str | None], bool]:
    return (lambda s: s == "InService") if want == "InService" else (lambda s: s in ("Draining", "OutOfService"))


def screen_trials(driver: Any, http: httpx.Client, gateway: str, count: int) -> list[float]:
    """`count` changes (drain, undrain, ...): ms from just before the API call to the row showing it."""
    took: list[float] = []
    for trial in range(count):
        want = "OutOfService" if trial % 2 == 0 else "InService"
        if driver.execute_script(OBSERVE, gateway, want):
            raise RuntimeError(f"{gateway} shows {want} before the change")
        before = time.time() * 1000
        _change(http, gateway, want)
        deadline = time.monotonic() + CHANGE_TIMEOUT_S
        seen = None
        while seen is None and time.monotonic() < deadline:
            seen = driver.execute_script("return window.benchSeen;")
            if seen is None:
                time.sleep(0.02)
        if seen is not None:
            took.append(float(seen) - before)
        _settle(http, gateway, want)
    return took


def api_trials(http: httpx.Client, gateway: str, count: int) -> list[float]:
    """The same changes seen by polling GET /admin/gateways/{name} every 10 ms (the API's own latency)."""
    took: list[float] = []
    for trial in range(count):
        want = "OutOfService" if trial % 2 == 0 else "InService"
        wanted = _wanted(want)
        before = time.perf_counter()
        _change(http, gateway, want)
        deadline = time.monotonic() + CHANGE_TIMEOUT_S
        while time.monotonic() < deadline:
            state = _ok(http.get(f"/admin/gateways/{gateway}"), 200).json()["properties"].get("serviceState")
            if wanted(state):
                took.append((time.perf_counter() - before) * 1000)
                break
            time.sleep(0.01)
        _settle(http, gateway, want)
    return took


def measure_screen(w: World, base: str, http: httpx.Client, quick: bool) -> dict[str, Any]:
    from selenium.webdriver.support.wait import WebDriverWait

    from isthmus.lab.browser import chromium, log_in

    count = 4 if quick else 10
    placement = _ok(w.admin("GET", "/placement"), 200).json()
    pool = placement["pools"][0]
    gateway = next(g["name"] for g in pool["gateways"] if g["role"] == "standby")  # carries nothing: drains at once
    with chromium() as driver:
        log_in(driver, base, w.operator)
        if not driver.current_url.endswith("/ui/fabric"):
            raise RuntimeError(f"the operator's login landed on {driver.current_url}")
        status = "const e = document.getElementById('live-status'); return e ? e.textContent : '';"
        WebDriverWait(driver, 15, poll_frequency=0.05).until(lambda d: d.execute_script(status) == "Live")
        screen = screen_trials(driver, http, gateway, count)
        api = api_trials(http, gateway, count)
    screen_p50, api_p50 = median(screen), median(api)
    return {
        "event_to_screen_ms_p50": _rounded(screen_p50),
        "event_to_screen_ms_max": _rounded(max(screen) if screen else None),
        "event_to_screen_seen": len(screen),
        "event_to_screen_trials": count,
        "event_to_api_ms_p50": _rounded(api_p50),
        "screen_vs_api_ratio": round(screen_p50 / api_p50, 1) if screen_p50 and api_p50 else None,
        "changed_gateway": gateway,
    }


def _ms(value: float | None) -> str:
    return "failed" if value is None else f"{value:.1f}"


def main() -> None:
    from isthmus.lab.browser import Served, free_port

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: under a minute")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-ui-"))
    figures: dict[str, Any] = {}
    try:
        with world(workdir) as w:
            figures.update(gateways=w.gateways, connections=w.connections, vnet_gateways_placed=w.placed,
                           vnet_gateways_unplaced=w.unplaced, build_s=round(w.build_s, 1))  # fmt: skip
            served = Served(w.client.app, free_port())
            served.start()
            try:
                with httpx.Client(base_url=served.base, headers=bearer(w.operator), timeout=30) as http:
                    figures.update(measure_pages(http, args.quick))
                    figures.update(measure_screen(w, served.base, http, args.quick))
            finally:
                served.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    page, screen = figures["fabric_page_ms_p50"], figures["event_to_screen_ms_p50"]
    rows = [
        ("fabric page: server render p50 (ms)", _ms(page), "<= 100", page is not None and page <= 100),
        ("  p90 (ms)", _ms(figures["fabric_page_ms_p90"]), "-", None),
        ("  whole request p50, client (ms)", _ms(figures["fabric_request_ms_p50"]), "-", None),
        ("  baseline GET /admin/placement p50 (ms)", _ms(figures["placement_api_ms_p50"]), "-", None),
        ("  fabric request / placement", f"{figures['fabric_vs_placement_ratio']}", "-", None),
        ("connections page: server render p50 (ms)", _ms(figures["connections_page_ms_p50"]), "-", None),
        ("  whole request p50, client (ms)", _ms(figures["connections_request_ms_p50"]), "-", None),
        ("event -> screen p50 (ms)", _ms(screen), "<= 1000", screen is not None and screen <= 1000),
        ("  max (ms)", _ms(figures["event_to_screen_ms_max"]), "-", None),
        ("  baseline: polling the API every 10 ms p50 (ms)", _ms(figures["event_to_api_ms_p50"]), "-", None),
        ("  screen / API", f"{figures['screen_vs_api_ratio']}", "-", None),
        ("world build (s)", f"{figures['build_s']:.1f}", "-", None),
    ]
    title = (f"\nisthmus dashboard benchmark — {figures['gateways']} gateways, {figures['connections']} connections "
             f"({figures['vnet_gateways_placed']} VNet gateways placed, {figures['vnet_gateways_unplaced']} unplaced), "
             "SQLite" + (" (--quick)" if args.quick else ""))  # fmt: skip
    finish(title, rows, figures)


if __name__ == "__main__":
    main()
