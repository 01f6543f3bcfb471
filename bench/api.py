"""Benchmark of the controller: API latency under 16 concurrent clients, and compile times.

Seeds a store (through the same code the API runs, in large transactions), serves it with a real
controller over HTTPS, and measures:
  - p50/p99 of GET and PUT with 16 concurrent clients   (targets on SQLite: p99 GET < 50 ms, PUT < 100 ms)
  - compile of every node's document from a snapshot     (target < 1 s)
  - one changed resource: snapshot refresh + recompile of the affected nodes (target < 50 ms)
  - with 100 hosts and 4 MUXes long-polling: how many return for one changed NIC (target 1), for a NIC
    gaining a public IP (target 1 + MUXes), and the bytes one MUX is sent for it (target <= 4,096)
  - the listener: how long a TLS connection that sends nothing is kept (target <= 10 s), the controller's
    RSS growth under 50 unauthenticated connections pushing unfinished headers (target <= 20 MB)
  - the largest VNet Azure allows (500 prefixes, 3,000 subnets) PUT again and again: its latency (target
    p50 <= 500 ms) and GET /healthz p99 meanwhile (target <= 50 ms)
Baseline in the same run: GET /healthz under the same load (the HTTP stack's floor).
Prints a table, then one JSON object as the last line. `--quick` is a small run under a minute.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import random
import select
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from itertools import islice
from pathlib import Path
from typing import Any

from isthmus.api.arm import resource_groups, service
from isthmus.api.arm.kinds import BY_COLLECTION
from isthmus.compile.documents import Compiler
from isthmus.lab.controller import controller_process
from isthmus.model import arm, limits
from isthmus.model.ids import ResourceId
from isthmus.model.snapshot import NIC, public_ip_keys
from isthmus.store import tokens
from isthmus.store.db import make_engine, reading, upgrade, writing
from isthmus.store.repo import Tx, new_etag
from isthmus.store.snapshots import load_snapshot, refresh
from table import finish

API = {"api-version": "2026-03-01"}
CLIENTS = 16
HOSTS = 100
MUXES = 4
UNAUTH_CLIENTS = 50


def subscription(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def admin_put(tx: Tx, collection: str, name: str, properties: dict[str, Any]) -> None:
    key = f"admin/{collection}/{name}".lower()
    body = {
        "id": f"/admin/{collection}/{name}",
        "name": name,
        "type": f"admin/{collection}",
        "tags": {},
        "properties": {**properties, "provisioningState": "Succeeded"},
    }
    tx.put(
        key,
        scope="admin",
        resource_group=None,
        type=f"admin/{collection}",
        name=name,
        body=body,
        etag=new_etag(),
    )


def seed(db: str, vnets: int, pips: int, nics: int) -> dict[str, float]:
    """Fill the store through the API's own code path (service.put), in transactions of 500."""
    engine = make_engine(db)
    upgrade(engine)
    subs = max(1, vnets // 100)
    started = time.perf_counter()
    with writing(engine) as conn:
        tx = Tx(conn)
        admin_put(tx, "publicIpPools", "bench", {"addressPrefixes": ["198.18.0.0/15"]})
        for h in range(HOSTS):
            admin_put(tx, "hosts", f"host{h}", {"node": f"host{h}", "address": f"192.0.2.{h + 1}"})
        for m in range(MUXES):
            admin_put(
                tx,
                "loadBalancerMuxes",
                f"mux{m}",
                {"node": f"mux{m}", "asn": 65100 + m, "routerId": f"198.51.100.{m + 1}", "peers": []},
            )
        for s in range(subs):
            key = resource_groups.key(subscription(s), "rg")
            tx.put(
                key,
                scope=subscription(s).lower(),
                resource_group="rg",
                type=resource_groups.TYPE,
                name="rg",
                body=resource_groups.body(subscription(s), "rg", "local", {}),
                etag=new_etag(),
            )

    def batch(kind_name: str, items: list[tuple[ResourceId, Any]]) -> None:
        kind = BY_COLLECTION[kind_name.lower()]
        for start in range(0, len(items), 500):
            with writing(engine) as conn:
                tx = Tx(conn)
                for rid, request in items[start : start + 500]:
                    service.put(tx, kind, rid, kind.model.model_validate(request))

    def rid(collection: str, index: int, per_sub: int) -> ResourceId:
        return ResourceId(subscription(index // per_sub % subs), "rg", collection, f"{collection[:4]}{index}")

    per_sub_vnets = max(1, vnets // subs)
    batch(
        "virtualNetworks",
        [
            (
                rid("virtualNetworks", i, per_sub_vnets),
                {
                    "location": "local",
                    "properties": {
                        "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
                        "subnets": [
                            {"name": "a", "properties": {"addressPrefix": "100.64.1.0/24"}},
                            {"name": "b", "properties": {"addressPrefix": "100.64.2.0/24"}},
                        ],
                    },
                },
            )
            for i in range(vnets)
        ],
    )
    per_sub_pips = max(1, pips // subs)
    batch(
        "publicIPAddresses",
        [
            (
                rid("publicIPAddresses", i, per_sub_pips),
                {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
            )
            for i in range(pips)
        ],
    )
    nic_items = []
    for i in range(nics):
        vnet = rid("virtualNetworks", i % vnets, per_sub_vnets)
        pip = rid("publicIPAddresses", i % pips, per_sub_pips)
        config: dict[str, Any] = {"subnet": {"id": str(vnet.child("subnets", "a"))}}
        if i % 5 == 0 and pip.subscription == vnet.subscription:
            config["publicIPAddress"] = {"id": str(pip)}
        nic_items.append(
            (
                ResourceId(vnet.subscription, "rg", "networkInterfaces", f"nic{i}"),
                {
                    "location": "local",
                    "properties": {"ipConfigurations": [{"name": "c", "properties": config}]},
                },
            )
        )
    batch("networkInterfaces", nic_items)
    with writing(engine) as conn:
        tx = Tx(conn)
        for i, (nic, _body) in enumerate(nic_items):
            admin_put(tx, "portBindings", f"b{i}", {"networkInterface": str(nic), "host": f"host{i % HOSTS}"})
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seed_s": seconds}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def load(url: str, ca: str, token: str, make_request: Any, count: int) -> list[float]:
    """`count` requests from CLIENTS concurrent clients (a thread and a keep-alive connection each; a
    threaded stdlib client is fair where one asyncio client showed its own scheduling tail); ms each."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        warmup = 3  # TLS handshakes and first-use costs are not what this measures
        for index in range(warmup + count // CLIENTS):
            method, path, body = make_request(rng)
            payload = json.dumps(body).encode() if body is not None else None
            started = time.perf_counter()
            connection.request(method, f"{path}?api-version={API['api-version']}", body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status >= 300:
                    failures.append(f"{method} {path}: {response.status} {text[:300]!r}")
                elif index >= warmup:
                    latencies.append(elapsed)
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    return latencies


def measure_api(db: str, workdir: Path, vnets: int, pips: int, requests: int) -> dict[str, float]:
    engine = make_engine(db)
    # One token over the many seeded subscriptions: an operator token made to reach them all.
    operator = tokens.create(engine, "operator", "operator", tokens.ALL_SUBSCRIPTIONS)
    engine.dispose()
    subs = max(1, vnets // 100)
    per_sub_vnets, per_sub_pips = max(1, vnets // subs), max(1, pips // subs)

    def vnet_path(rng: random.Random) -> str:
        i = rng.randrange(vnets)
        return (
            f"/subscriptions/{subscription(i // per_sub_vnets % subs)}/resourceGroups/rg/providers/"
            f"Microsoft.Network/virtualNetworks/virt{i}"
        )

    def get_request(rng: random.Random) -> tuple[str, str, Any]:
        if rng.random() < 0.5:
            return "GET", vnet_path(rng), None
        i = rng.randrange(pips)
        return (
            "GET",
            (
                f"/subscriptions/{subscription(i // per_sub_pips % subs)}/resourceGroups/rg/providers/"
                f"Microsoft.Network/publicIPAddresses/publ{i}"
            ),
            None,
        )

    counter = iter(range(10**9))

    def put_request(rng: random.Random) -> tuple[str, str, Any]:
        if rng.random() < 0.5:
            return (
                "PUT",
                vnet_path(rng),
                {
                    "location": "local",
                    "tags": {"n": str(rng.random())},
                    "properties": {
                        "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
                        "subnets": [
                            {"name": "a", "properties": {"addressPrefix": "100.64.1.0/24"}},
                            {"name": "b", "properties": {"addressPrefix": "100.64.2.0/24"}},
                        ],
                    },
                },
            )
        sub = subscription(rng.randrange(subs))
        return (
            "PUT",
            (
                f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/"
                f"new{next(counter)}"
            ),
            {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
        )

    def healthz(_rng: random.Random) -> tuple[str, str, Any]:
        return "GET", "/healthz", None

    with controller_process(db, workdir) as controller:
        url, ca = controller.url, str(controller.ca)
        baseline = load(url, ca, operator, healthz, requests)
        gets = load(url, ca, operator, get_request, requests)
        puts = load(url, ca, operator, put_request, requests)
    return {
        "healthz_p50_ms": statistics.median(baseline),
        "healthz_p99_ms": percentile(baseline, 0.99),
        "get_p50_ms": statistics.median(gets),
        "get_p99_ms": percentile(gets, 0.99),
        "put_p50_ms": statistics.median(puts),
        "put_p99_ms": percentile(puts, 0.99),
        "get_p99_over_healthz_p99": percentile(gets, 0.99) / percentile(baseline, 0.99),
    }


def measure_compile(db: str, changes: int) -> dict[str, float]:
    engine = make_engine(db)
    started = time.perf_counter()
    with reading(engine) as conn:
        snapshot = load_snapshot(conn)
    load_s = time.perf_counter() - started
    gc.freeze()  # as the controller does with the snapshot it keeps (api/documents.py)
    started = time.perf_counter()
    compiler = Compiler(snapshot)
    documents = compiler.all_documents()
    compile_all_s = time.perf_counter() - started
    refresh_ms, compile_ms, affected_counts = [], [], []
    kind = BY_COLLECTION["networkinterfaces"]
    rng = random.Random(1)
    nic_keys = [k for k, t in snapshot.types.items() if t == kind.type]
    for _ in range(changes):
        key = rng.choice(nic_keys)
        doc = snapshot.documents[key]
        with writing(engine) as conn:
            tx = Tx(conn)
            parts = doc["id"].split("/")
            rid = ResourceId(parts[2], parts[4], parts[7], parts[8])
            request = arm.NetworkInterface.model_validate(
                {"location": "local", "tags": {"t": str(rng.random())}, "properties": doc["properties"]}
            )
            service.put(tx, kind, rid, request)
        started = time.perf_counter()
        with reading(engine) as conn:
            new, changed = refresh(conn, compiler.snapshot)
        refreshed = time.perf_counter()
        affected = compiler.advance(new, changed)
        for node in affected:
            compiler.document(node)
        done = time.perf_counter()
        refresh_ms.append((refreshed - started) * 1000)
        compile_ms.append((done - refreshed) * 1000)
        affected_counts.append(len(affected))
        snapshot = new
    engine.dispose()
    return {
        "snapshot_load_s": load_s,
        "compile_all_s": compile_all_s,
        "nodes": len(documents),
        "one_change_refresh_p50_ms": statistics.median(refresh_ms),
        "one_change_compile_p50_ms": statistics.median(compile_ms),
        "one_change_compile_max_ms": max(compile_ms),
        "one_change_affected_nodes_p50": statistics.median(affected_counts),
    }


class Client:
    """A keep-alive HTTPS connection to the controller, bearing one token."""

    def __init__(self, url: str, ca: str, token: str, timeout: float = 60) -> None:
        host, port = url.removeprefix("https://").split(":")
        self.connection = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=ca),
                                                      timeout=timeout)  # fmt: skip
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, dict[str, str]]:
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):  # the server closes keep-alive connections idle for 5 s: reconnect once
            try:
                self.connection.request(method, path, body=payload, headers=self.headers)
                response = self.connection.getresponse()
                return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Node(Client):
    """One node's side of the agent protocol, with a keep-alive connection of its own."""

    def __init__(self, url: str, ca: str, name: str, role: str, token: str) -> None:
        super().__init__(url, ca, token)
        self.name, self.role = name, role
        self.revision = 0

    def desired(self, timeout: float) -> tuple[int, bytes]:
        """One long-poll from the revision held (with deltas, as agents ask); moves the revision on."""
        status, body, headers = self.call(
            "GET", f"/v1/nodes/{self.name}/desired?after={self.revision}&timeout={timeout}&deltas=true"
        )
        if status == 200:
            self.revision = int(headers["x-isthmus-revision"])
        return status, body


def measure_wakeups(db: str, workdir: Path, pips: int, nics: int) -> dict[str, Any]:
    """Which nodes' long-polls return for one change, and how many bytes a MUX is sent for it."""
    engine = make_engine(db)
    # One token over the many seeded subscriptions: an operator token made to reach them all.
    operator = tokens.create(engine, "operator", "operator", tokens.ALL_SUBSCRIPTIONS)
    names = [(f"host{h}", "host") for h in range(HOSTS)] + [(f"mux{m}", "mux") for m in range(MUXES)]
    node_tokens = {name: tokens.create(engine, "node", name) for name, _role in names}
    engine.dispose()
    with reading(make_engine(db)) as conn:
        snapshot = load_snapshot(conn)
    nic_doc = next(  # without a public IP (the seed gives every fifth NIC one) or an NSG (earlier runs on a kept
        doc  # store gave theirs one)
        for key, doc in sorted(snapshot.documents.items())
        if snapshot.types[key] == NIC and not public_ip_keys(doc) and "networkSecurityGroup" not in doc["properties"]
    )
    nic_path = nic_doc["id"]
    group = nic_path.split("/providers/")[0]
    figures: dict[str, Any] = {}
    with controller_process(db, workdir) as controller:
        url, ca = controller.url, str(controller.ca)
        nodes = [Node(url, ca, name, role, node_tokens[name]) for name, role in names]
        admin = Client(url, ca, operator)
        for node in nodes:
            status, body, _h = node.call("POST", f"/v1/nodes/{node.name}/register", {"role": node.role})
            assert status == 200, body
            status, body = node.desired(0)
            if node.role == "mux":
                figures["full_mux_document_bytes"] = len(body)

        def write(method: str, path: str, body: Any) -> None:
            status, text, _h = admin.call(method, f"{path}?api-version={API['api-version']}", body)
            assert status < 300, text

        def woken(change: Callable[[], None]) -> dict[str, int]:
            """node -> bytes received, for every node whose long-poll returned within a few seconds."""
            for node in nodes:  # catch up with whatever earlier steps changed
                while node.desired(0)[0] == 200:
                    pass
            returned: dict[str, int] = {}
            lock = threading.Lock()

            def poll(node: Node) -> None:
                status, body = node.desired(4)
                if status == 200:
                    with lock:
                        returned[node.name] = len(body)

            threads = [threading.Thread(target=poll, args=(node,)) for node in nodes]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # every node is waiting now
            change()
            for thread in threads:
                thread.join()
            return returned

        nsg = f"{group}/providers/Microsoft.Network/networkSecurityGroups/bench-nsg"
        write("PUT", nsg, {"location": "local", "properties": {"securityRules": []}})
        pip = f"{group}/providers/Microsoft.Network/publicIPAddresses/bench-{nic_doc['name']}"  # one per NIC
        write("PUT", pip, {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}})
        config = nic_doc["properties"]["ipConfigurations"][0]
        subnet = {"id": config["properties"]["subnet"]["id"]}

        def nic_gains_an_nsg() -> None:
            write("PUT", nic_path, {"location": "local", "properties": {
                "networkSecurityGroup": {"id": nsg},
                "ipConfigurations": [{"name": "c", "properties": {"subnet": subnet}}],
            }})  # fmt: skip

        def nic_gains_a_public_ip() -> None:
            write("PUT", nic_path, {"location": "local", "properties": {
                "networkSecurityGroup": {"id": nsg},
                "ipConfigurations": [{"name": "c", "properties": {"subnet": subnet, "publicIPAddress": {"id": pip}}}],
            }})  # fmt: skip

        plain = woken(nic_gains_an_nsg)
        with_pip = woken(nic_gains_a_public_ip)
    figures["one_change_nodes_woken"] = len(plain)
    figures["one_change_woken"] = sorted(plain)
    figures["one_change_pip_nodes_woken"] = len(with_pip)
    figures["one_change_pip_woken"] = sorted(with_pip)
    figures["one_change_bytes_to_mux"] = max((b for n, b in with_pip.items() if n.startswith("mux")), default=None)
    return figures


def max_vnet() -> dict[str, Any]:
    """The largest VNet Azure allows: ADDRESS_PREFIXES_PER_VNET /24s and SUBNETS_PER_VNET /29s in them, no NSGs."""
    prefixes = list(islice(IPv4Network("100.64.0.0/10").subnets(new_prefix=24), limits.ADDRESS_PREFIXES_PER_VNET))
    subnets = islice(
        (subnet for prefix in prefixes for subnet in prefix.subnets(new_prefix=29)), limits.SUBNETS_PER_VNET
    )
    return {
        "location": "local",
        "properties": {
            "addressSpace": {"addressPrefixes": [str(prefix) for prefix in prefixes]},
            "subnets": [{"name": f"s{i}", "properties": {"addressPrefix": str(net)}} for i, net in enumerate(subnets)],
        },
    }


def tls_socket(url: str, ca: str, timeout: float) -> ssl.SSLSocket:
    host, port = url.removeprefix("https://").split(":")
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    return ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)


def answered(sock: ssl.SSLSocket) -> bool:
    """Whether the server answered or closed (TLS session tickets make a socket readable: read to know)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    sock.setblocking(False)
    try:
        return sock.recv(65536) is not None  # a byte of answer, or b"" for a close
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def idle_connection_kept_s(url: str, ca: str, cap: float = 60.0) -> float:
    """How long the controller keeps a TLS connection that sends nothing (`cap` if it is still open then)."""
    sock = tls_socket(url, ca, timeout=cap)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return cap
    except OSError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started


def vm_rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def unfinished_headers_growth_mb(url: str, ca: str, pid: int, clients: int, seconds: float) -> float:
    """The controller's RSS growth (peak) while `clients` unauthenticated connections send header bytes as fast
    as they are taken and never end the head, each reconnecting when cut."""
    before = vm_rss_mb(pid)
    stop = time.monotonic() + seconds
    line = b"X-Pad: " + b"a" * 16 * 1024 + b"\r\n"

    def push() -> None:
        while time.monotonic() < stop:
            try:
                sock = tls_socket(url, ca, timeout=5)
            except OSError:
                continue
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                while time.monotonic() < stop and not answered(sock):
                    sock.sendall(line)
            except OSError:
                pass
            sock.close()

    threads = [threading.Thread(target=push) for _ in range(clients)]
    for thread in threads:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in threads) and time.monotonic() < stop + 10:
        peak = max(peak, vm_rss_mb(pid))
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return peak - before


def max_vnet_puts(url: str, ca: str, token: str, count: int, seconds: float) -> dict[str, Any]:
    """One client PUTs the largest VNet again and again (a tag changes each time) while another samples
    /healthz: both latencies, in ms."""
    body = max_vnet()
    size = len(json.dumps(body).encode())
    assert size < limits.REQUEST_BODY_BYTES, size
    path = f"/subscriptions/{subscription(0)}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/bench-max"
    put_ms: list[float] = []
    healthz_ms: list[float] = []
    failure: list[str] = []
    done = threading.Event()

    def put() -> None:
        client = Client(url, ca, token, timeout=120)
        deadline = time.monotonic() + seconds
        try:
            for i in range(count):
                if time.monotonic() > deadline:
                    break
                body["tags"] = {"n": str(i)}
                started = time.perf_counter()
                status, text, _h = client.call("PUT", f"{path}?api-version={API['api-version']}", body)
                if status >= 300:
                    failure.append(f"{status} {text[:300].decode(errors='replace')}")
                    break
                put_ms.append((time.perf_counter() - started) * 1000)
        finally:
            done.set()

    def healthz() -> None:
        client = Client(url, ca, token)
        while not done.is_set():
            started = time.perf_counter()
            status, _text, _h = client.call("GET", "/healthz")
            if status == 200:
                healthz_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)

    threads = [threading.Thread(target=put), threading.Thread(target=healthz)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "max_vnet_body_bytes": size,
        "max_vnet_puts": len(put_ms),
        "max_vnet_put_error": failure[0] if failure else None,
        "max_vnet_put_ms": statistics.median(put_ms) if put_ms else None,
        "max_vnet_put_ms_p99": percentile(put_ms, 0.99) if put_ms else None,
        "healthz_during_max_put_ms_p99": percentile(healthz_ms, 0.99) if healthz_ms else None,
        "healthz_during_max_put_samples": len(healthz_ms),
    }


def measure_listener(db: str, workdir: Path, puts: int, put_seconds: float) -> dict[str, Any]:
    """What unauthenticated clients can hold (a connection's time, the controller's memory), and how one very
    large write weighs on everyone else."""
    engine = make_engine(db)
    tenant = tokens.create(engine, "subscription", subscription(0))  # the largest VNet's own tenant
    engine.dispose()
    figures: dict[str, Any] = {}
    with controller_process(db, workdir) as controller:
        url, ca = controller.url, str(controller.ca)
        idle: list[float] = []  # measured alongside the memory attack: the listener's timers hold under it
        idle_thread = threading.Thread(target=lambda: idle.append(idle_connection_kept_s(url, ca)))
        idle_thread.start()
        figures["unauth_memory_mb"] = unfinished_headers_growth_mb(url, ca, controller.pid, UNAUTH_CLIENTS, 2.0)
        idle_thread.join()
        figures["idle_conn_closed_s"] = idle[0]
        figures.update(max_vnet_puts(url, ca, tenant, puts, put_seconds))
    return figures


def fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return "failed" if value is None else pattern.format(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--workdir", type=Path, help="keep the seeded store here, and reuse it if it is there")
    args = parser.parse_args()
    vnets, pips, nics, requests, changes = (
        (1_000, 10_000, 2_000, 800, 10) if args.quick else (10_000, 100_000, 20_000, 4_000, 30)
    )
    max_puts, max_put_seconds = (3, 2.0) if args.quick else (30, 30.0)
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        marker = workdir / f"seeded-{vnets}-{pips}-{nics}"
        db = f"sqlite:///{workdir / 'bench.db'}"
        figures: dict[str, Any] = {"vnets": vnets, "public_ips": pips, "nics": nics, "clients": CLIENTS}
        if marker.exists():
            figures["seed_s"] = float(marker.read_text())
            upgrade(make_engine(db))  # a store kept from an earlier schema
        else:
            for stale in workdir.glob("bench.db*"):
                stale.unlink()
            figures.update(seed(db, vnets, pips, nics))
            marker.write_text(str(figures["seed_s"]))
        figures.update(measure_compile(db, changes))
        figures.update(measure_api(db, workdir, vnets, pips, requests))
        figures.update(measure_listener(db, workdir, max_puts, max_put_seconds))
        figures.update(measure_wakeups(db, workdir, pips, nics))  # last: it registers nodes, live for 15 s
    rows = [
        (
            "GET p50 / p99 (ms)",
            f"{figures['get_p50_ms']:.1f} / {figures['get_p99_ms']:.1f}",
            "p99 < 50",
            figures["get_p99_ms"] < 50,
        ),
        (
            "PUT p50 / p99 (ms)",
            f"{figures['put_p50_ms']:.1f} / {figures['put_p99_ms']:.1f}",
            "p99 < 100",
            figures["put_p99_ms"] < 100,
        ),
        (
            "baseline GET /healthz p50 / p99 (ms)",
            f"{figures['healthz_p50_ms']:.1f} / {figures['healthz_p99_ms']:.1f}",
            "-",
            None,
        ),
        ("GET p99 / healthz p99", f"{figures['get_p99_over_healthz_p99']:.2f}", "-", None),
        (
            "compile all nodes (s)",
            f"{figures['compile_all_s']:.3f} ({figures['nodes']} nodes)",
            "< 1",
            figures["compile_all_s"] < 1,
        ),
        (
            "one change: compile affected (ms, p50)",
            f"{figures['one_change_compile_p50_ms']:.1f}",
            "< 50",
            figures["one_change_compile_p50_ms"] < 50,
        ),
        (
            "one NIC change: nodes woken",
            f"{figures['one_change_nodes_woken']}",
            "1",
            figures["one_change_nodes_woken"] == 1,
        ),
        (
            "NIC gains a public IP: nodes woken",
            f"{figures['one_change_pip_nodes_woken']}",
            f"{1 + MUXES}",
            figures["one_change_pip_nodes_woken"] == 1 + MUXES,
        ),
        (
            "  bytes sent to one MUX for it",
            f"{figures['one_change_bytes_to_mux']}",
            "<= 4096",
            (figures["one_change_bytes_to_mux"] or 10**9) <= 4096,
        ),
        ("  the whole MUX document (bytes, reference)", f"{figures['full_mux_document_bytes']}", "-", None),
        (
            "idle TLS connection kept (s)",
            f"{figures['idle_conn_closed_s']:.1f}",
            "<= 10",
            figures["idle_conn_closed_s"] <= 10,
        ),
        (
            f"RSS growth, {UNAUTH_CLIENTS} unfinished heads (MB)",
            f"{figures['unauth_memory_mb']:.1f}",
            "<= 20",
            figures["unauth_memory_mb"] <= 20,
        ),
        (
            "largest VNet PUT p50 / p99 (ms)",
            f"{fmt(figures['max_vnet_put_ms'], '{:.0f}')} / {fmt(figures['max_vnet_put_ms_p99'], '{:.0f}')}",
            "p50 <= 500",
            (figures["max_vnet_put_ms"] or 10**9) <= 500,
        ),
        (
            "  GET /healthz p99 meanwhile (ms)",
            fmt(figures["healthz_during_max_put_ms_p99"]),
            "<= 50",
            (figures["healthz_during_max_put_ms_p99"] or 10**9) <= 50,
        ),
        ("one change: snapshot refresh (ms, p50)", f"{figures['one_change_refresh_p50_ms']:.1f}", "-", None),
        ("snapshot load (s)", f"{figures['snapshot_load_s']:.2f}", "-", None),
        ("seed (s)", f"{figures['seed_s']:.1f}", "-", None),
    ]
    title = f"\nisthmus API benchmark — {vnets} VNets, {pips} public IPs, {nics} NICs, {CLIENTS} clients, SQLite"
    finish(title, rows, figures, (42, 26, 10))


if __name__ == "__main__":
    main()
