"""`isthmus lab up|down|status`: the whole fabric in network namespaces on one machine.

    internet host ── br-inet ── ToR (FRR) ── br-under (198.18.0.0/24) ──┬── mux1 ── …
     198.51.100.10              198.18.0.1                              ├── gw1..gwN (no agents yet)
                                                                        └── h1..hN ── VNet routers ── VMs
    controller (root netns, loopback for the CLI; a socket in ctl on 198.18.255.1) ── br-mgmt ── every node

Everything the lab creates is named with its prefix: `down` removes every namespace with that prefix
(ending the processes inside them) and the processes it recorded, also after a crash or half an `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from isthmus.lab import tor
from isthmus.lab.controller import start_controller, stop
from isthmus.lab.topology import (
    CONTROLLER,
    CONTROLLER_PORT,
    INTERNET_HOST,
    MUX_ASN,
    PUBLIC_POOL,
    TOR_ASN,
    TOR_UNDERLAY,
    TOR_UPLINK,
    UNDERLAY_MTU,
    UNDERLAY_PREFIXLEN,
    Node,
    Topology,
)
from isthmus.linux.run import add_netns, delete_netns, ip_batch, list_netns, netns_pids, sysctl
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade

STATE_FILE = "lab.json"
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}


class LabError(Exception):
    pass


@dataclass
class LabState:
    prefix: str
    workdir: str
    hosts: int
    muxes: int
    gateways: int
    db: str
    controller: str  # the URL the CLI uses (loopback)
    ca: str
    operator_token: str
    pids: dict[str, int] = field(default_factory=dict)  # what the lab started: name -> PID

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.hosts, self.muxes, self.gateways)

    def save(self) -> None:
        path = Path(self.workdir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    def operator(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.controller,
            headers={"Authorization": f"Bearer {self.operator_token}"},
            verify=self.ca,
            timeout=30.0,
        )


def load_state(workdir: Path) -> LabState | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    return LabState(**json.loads(path.read_text()))


def up(workdir: Path, topology: Topology, *, log_level: str = "info") -> LabState:
    """Build the fabric, start the controller, the ToR and the agents; return once every agent reported."""
    if any(name.startswith(topology.prefix) for name in list_netns()):
        raise LabError(f"namespaces named {topology.prefix}* exist: run `isthmus lab down` first")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    db = f"sqlite:///{workdir / 'isthmus.db'}"
    if (workdir / "isthmus.db").exists():
        for leftover in workdir.glob("isthmus.db*"):
            leftover.unlink()
    state = LabState(topology.prefix, str(workdir), topology.hosts, topology.muxes, topology.gateways, db, "", "", "")
    try:
        _build_network(topology)
        engine = make_engine(db)
        upgrade(engine)
        state.operator_token = tokens.create(engine, "operator", "operator")
        node_tokens = {node.name: tokens.create(engine, "node", node.name) for node in topology.nodes()}
        engine.dispose()
        extra = ("--listen-netns", f"{topology.netns('ctl')}:{CONTROLLER}:{CONTROLLER_PORT}")
        names = ("localhost", "127.0.0.1", CONTROLLER)
        controller = start_controller(db, workdir, names=names, extra=extra)
        state.controller, state.ca = controller.url, str(controller.ca)
        state.pids["controller"] = controller.pid
        state.save()
        muxes = [n.underlay for n in topology.nodes() if n.role == "mux"]
        for i, pid in enumerate(tor.start_tor(topology.netns("tor"), tor.run_dir(topology.netns("tor")), muxes)):
            state.pids[f"tor-{i}"] = pid
        state.save()
        _declare(state, topology)
        for node in topology.nodes():
            if node.role in ("host", "mux"):
                state.pids[node.name] = _start_agent(state, node, node_tokens[node.name], log_level)
        state.save()
        _wait_registered(state, [n.name for n in topology.nodes() if n.role in ("host", "mux")])
        _wait_bgp(topology)
    except BaseException:
        down(workdir, topology.prefix)
        raise
    return state


def _build_network(topology: Topology) -> None:
    fabric = topology.netns("fabric")
    add_netns(fabric)
    ip_batch(fabric, [f"link add {br} type bridge" for br in ("br-under", "br-mgmt", "br-inet")]
             + ["link set br-under mtu 9000 up", "link set br-mgmt up", "link set br-inet up"])  # fmt: skip

    def attach(netns: str, bridge: str, outside: str, inside: str, address: str, mtu: int = 1500) -> None:
        ip_batch(fabric, [f"link add {outside} mtu {mtu} type veth peer name {inside} netns {netns}",
                          f"link set {outside} master {bridge} up"])  # fmt: skip
        ip_batch(netns, [f"link set {inside} mtu {mtu}", f"addr add {address} dev {inside}", f"link set {inside} up"])

    tor_ns, inet, ctl = topology.netns("tor"), topology.netns("inet"), topology.netns("ctl")
    for netns in (tor_ns, inet, ctl):
        add_netns(netns)
    sysctl(tor_ns, NODE_SYSCTLS)
    attach(tor_ns, "br-under", "u-tor", "under0", f"{TOR_UNDERLAY}/{UNDERLAY_PREFIXLEN}", UNDERLAY_MTU)
    attach(tor_ns, "br-inet", "i-tor", "inet0", f"{TOR_UPLINK}/24")
    attach(inet, "br-inet", "i-inet", "eth0", f"{INTERNET_HOST}/24")
    ip_batch(inet, [f"route add default via {TOR_UPLINK}"])
    attach(ctl, "br-mgmt", "m-ctl", "mgmt0", f"{CONTROLLER}/24")
    for node in topology.nodes():
        netns = topology.netns(node.name)
        add_netns(netns)
        sysctl(netns, NODE_SYSCTLS)
        attach(netns, "br-under", f"u-{node.name}", "under0", f"{node.underlay}/{UNDERLAY_PREFIXLEN}", UNDERLAY_MTU)
        attach(netns, "br-mgmt", f"m-{node.name}", "mgmt0", f"{node.management}/24")
        ip_batch(netns, [f"route add default via {TOR_UNDERLAY}"])


def _declare(state: LabState, topology: Topology) -> None:
    """The operator's view of the fabric: the public pool, hosts, MUXes, a gateway pool and its gateways."""
    objects: list[tuple[str, dict[str, Any]]] = [("publicIpPools/lab", {"addressPrefixes": [PUBLIC_POOL]})]
    gateways = [n for n in topology.nodes() if n.role == "gateway"]
    if gateways:
        pool = {"type": "All", "redundantGatewayCount": 1 if len(gateways) > 1 else 0,
                "gatewayCapacityKbps": 1_000_000, "tierBandwidthKbps": 100_000}  # fmt: skip
        objects.append(("gatewayPools/all", pool))
    for node in topology.nodes():
        if node.role == "host":
            objects.append((f"hosts/{node.name}", {"node": node.name, "address": node.underlay}))
        elif node.role == "mux":
            peer = {"address": TOR_UNDERLAY, "asn": TOR_ASN}
            mux = {"node": node.name, "asn": MUX_ASN, "routerId": node.underlay, "peers": [peer]}
            objects.append((f"loadBalancerMuxes/{node.name}", mux))
        else:
            objects.append((f"gateways/{node.name}", {"node": node.name, "pool": "all"}))
    with state.operator() as http:
        for path, properties in objects:
            response = http.put(f"/admin/{path}", json={"properties": properties})
            if response.status_code >= 300:
                raise LabError(f"PUT /admin/{path}: {response.status_code} {response.text}")


def _start_agent(state: LabState, node: Node, token: str, log_level: str) -> int:
    workdir = Path(state.workdir)
    token_file = workdir / f"{node.name}.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    command = [
        "nsenter", f"--net=/run/netns/{state.topology.netns(node.name)}",
        sys.executable, "-m", "isthmus", "agent", node.role, "--node", node.name,
        "--controller", state.topology.controller_url, "--ca", state.ca, "--token-file", str(token_file),
        "--address", node.underlay, "--log-level", log_level,
    ]  # fmt: skip
    if node.role == "host":
        command += ["--netns-prefix", state.prefix]
    else:
        command += ["--run-dir", str(tor.run_dir(state.topology.netns(node.name)))]
    with open(workdir / "logs" / f"{node.name}.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    return process.pid


def restart_agent(state: LabState, name: str, log_level: str = "info") -> int:
    node = next(n for n in state.topology.nodes() if n.name == name)
    token = (Path(state.workdir) / f"{name}.token").read_text()
    state.pids[name] = _start_agent(state, node, token, log_level)
    state.save()
    return state.pids[name]


def _wait_registered(state: LabState, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with state.operator() as http:
        while time.monotonic() < deadline:
            nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
            if all(name in nodes and nodes[name].get("live") for name in names):
                return
            time.sleep(0.2)
    missing = [n for n in names if n not in nodes or not nodes[n].get("live")]
    raise LabError(f"agents did not report within {timeout:.0f} s: {', '.join(missing)} (see {state.workdir}/logs)")


def _wait_bgp(topology: Topology, timeout: float = 30.0) -> None:
    """Until the ToR has an established session with every MUX (public IPs are reachable from then on)."""
    run_dir = tor.run_dir(topology.netns("tor"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = tor.established(run_dir)
        if len(sessions) == topology.muxes and all(sessions.values()):
            return
        time.sleep(0.1)
    raise LabError(f"the ToR's BGP sessions to the MUXes did not come up within {timeout:.0f} s")


def down(workdir: Path, prefix: str | None = None) -> list[str]:
    """Remove everything the lab made: its recorded processes, and every namespace named with its prefix
    with the processes inside. Safe to run twice, after a crash, or after a half-finished `up`."""
    state = load_state(workdir)
    prefix = prefix or (state.prefix if state else None)
    removed = []
    if state is not None:
        for name, pid in state.pids.items():
            if _ours(pid):
                if name == "controller" or name in _agent_names(state):
                    stop(pid)  # graceful first: they were started in their own sessions
                else:
                    _kill(pid)
                removed.append(f"process {name} ({pid})")
    if prefix:
        for netns in sorted(n for n in list_netns() if n.startswith(prefix)):
            for pid in netns_pids(netns):
                _kill(pid)
            delete_netns(netns)
            removed.append(f"netns {netns}")
    if state is not None:
        (workdir / STATE_FILE).unlink(missing_ok=True)
    if prefix:
        for run_dir in tor.run_dir(prefix).parent.glob(f"{prefix}*"):
            shutil.rmtree(run_dir, ignore_errors=True)
    return removed


def _agent_names(state: LabState) -> set[str]:
    return {n.name for n in state.topology.nodes()}


def _ours(pid: int) -> bool:
    """Still the process the lab started (a PID can be reused): an isthmus or FRR command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "isthmus" in cmdline or "/usr/lib/frr/" in cmdline


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def status(workdir: Path) -> dict[str, Any]:
    state = load_state(workdir)
    if state is None:
        return {"up": False}
    processes = {name: {"pid": pid, "running": _ours(pid)} for name, pid in state.pids.items()}
    namespaces = sorted(n for n in list_netns() if n.startswith(state.prefix))
    nodes: list[dict[str, Any]] = []
    try:
        with state.operator() as http:
            nodes = http.get("/admin/nodes").json()["value"]
    except httpx.HTTPError as error:
        nodes = [{"error": str(error)}]
    return {"up": True, "prefix": state.prefix, "controller": state.controller, "processes": processes,
            "namespaces": len(namespaces), "nodes": nodes}  # fmt: skip
