"""`isthmus lab up|down|status`: the whole fabric in network namespaces on one machine.

    internet host ── br-inet ── ToR (FRR) ── br-under (198.18.0.0/24) ──┬── mux1 ── …
     198.51.100.10              198.18.0.1                              ├── gw1..gwN ── prov0 ── br-prov
                                                                        └── h1..hN ── VNet routers ── VMs
    (br-prov: the provider network of L3 connections; provider routers are sites on it, lab/sites.py)
    controller (root netns, loopback for the CLI; a socket in ctl on 198.18.255.1) ── br-mgmt ── every node

A lab is its workdir's state file (lab.json) and the prefix recorded there: every namespace it creates starts
with the prefix. `down` stops the processes the state recorded (each checked to still be the one started) and
removes the namespaces with that prefix, also after a crash or half an `up` (the state is saved before anything
is built). Without a state file only an explicit prefix is cleaned, never a default one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from isthmus.lab import postgres, tor
from isthmus.lab.controller import start_controller, stop
from isthmus.lab.topology import (
    CONTROLLER,
    INTERNET_HOST,
    MUX_ASN,
    PROVIDER_DEVICE,
    PUBLIC_POOL,
    TOR_ASN,
    TOR_UNDERLAY,
    TOR_UPLINK,
    UNDERLAY_MTU,
    UNDERLAY_PREFIXLEN,
    Node,
    Topology,
)
from isthmus.linux.offload import set_tx_checksum
from isthmus.linux.run import add_netns, delete_netns, ip_batch, list_netns, netns_pids, sysctl

if TYPE_CHECKING:
    from isthmus.lab.kernel.guest import Guest

STATE_FILE = "lab.json"
METRICS_PORT = 9477  # every agent's Prometheus metrics, on its management address
RUN_ROOT = tor.run_dir("lab").parent  # /run/isthmus: the daemons' run directories, and who owns each prefix
KERNEL_NODE_DEADLINE = 120.0  # qemu start -> network up, and -> agent registered (TCG: ~7 s and ~38 s)
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}


SITES_FILE = "sites.json"  # the remote sites of the lab (lab/sites.py)


class LabError(Exception):
    pass


class NoLab(LabError):
    def __init__(self, workdir: Path) -> None:
        super().__init__(f"no lab in {workdir} (no {workdir / STATE_FILE})")


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
    started: dict[str, int] = field(default_factory=dict)  # name -> its start time (a PID can be reused)
    kernel_nodes: list[str] = field(default_factory=list)  # nodes that are qemu guests (lab/kernel/node.py)
    controllers: int = 1  # controller replicas; more than one share a PostgreSQL cluster (lab/postgres.py)
    replicas: list[str] = field(default_factory=list)  # each replica's loopback URL, in order
    postgres: str = ""  # the PostgreSQL cluster's directory, when the lab runs one

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.hosts, self.muxes, self.gateways, self.controllers)

    def record(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        if (ticks := _start_ticks(pid)) is not None:
            self.started[name] = ticks

    def running(self, name: str) -> bool:
        return _ours(self.pids[name], self.started.get(name))

    def running_replica(self, replica: int) -> bool:
        name = replica_name(replica)
        return name in self.pids and self.running(name)

    def guest_dir(self, node: str) -> Path:
        """The workdir of kernel node `node`'s guest (its console, qemu's PID, the share folder)."""
        return Path(self.workdir) / "kernel" / node

    def save(self) -> None:
        path = Path(self.workdir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    def operator(self) -> httpx.Client:
        """A client of the first replica still running (with one controller: the controller)."""
        running = [url for i, url in enumerate(self.replicas) if self.running_replica(i)]
        return httpx.Client(
            base_url=running[0] if running else self.controller,
            headers={"Authorization": f"Bearer {self.operator_token}"},
            verify=self.ca,
            timeout=30.0,
        )


def load_state(workdir: Path) -> LabState | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    return LabState(**json.loads(path.read_text()))


def check_free(workdir: Path, topology: Topology) -> None:
    """LabError unless a lab can be built in `workdir` with `topology`'s prefix: no lab's state there, no
    namespace with the prefix."""
    state = load_state(workdir)
    if state is not None:
        alive = [name for name in state.pids if state.running(name)]
        what = "is up" if alive else "was left (its processes are gone)"
        raise LabError(
            f"a lab {what} in {workdir} (prefix {state.prefix}): `isthmus lab down --workdir {workdir}` first"
        )
    if any(name.startswith(topology.prefix) for name in list_netns()):
        owner = _owner(topology.prefix)
        where = f"the lab in {owner}" if owner else "no lab's state"
        raise LabError(
            f"namespaces named {topology.prefix}* exist ({where}): use another --prefix, or remove them with "
            f"`isthmus lab down --workdir {owner or workdir}{'' if owner else f' --prefix {topology.prefix}'}`"
        )


def check_kernel_nodes(topology: Topology, kernel_nodes: Sequence[str]) -> None:
    """LabError unless every one of `kernel_nodes` is a node of `topology` and this machine can boot guests
    (qemu and the prepared kernel, both from the bootstrap)."""
    known = {n.name for n in topology.nodes()}
    if unknown := [name for name in kernel_nodes if name not in known]:
        raise LabError(f"--kernel-nodes names {', '.join(unknown)}, not nodes of this lab ({', '.join(sorted(known))})")
    if not kernel_nodes:
        return
    from isthmus.lab.kernel import image  # here: most labs have no kernel nodes
    from isthmus.lab.kernel.guest import QEMU

    if shutil.which(QEMU) is None:
        raise LabError(f"kernel nodes need {QEMU}, which is not installed: run {image.BOOTSTRAP_STEP}")
    try:
        image.find()
    except image.KernelMissing as error:
        raise LabError(f"kernel nodes need the guest kernel: {error}") from error


def up(workdir: Path, topology: Topology, *, kernel_nodes: Sequence[str] = (), log_level: str = "info") -> LabState:
    """Build the fabric, start the controller, the ToR and the agents; return once every agent reported.
    `kernel_nodes` run as qemu guests on Debian's kernel instead of in namespaces. The lab's store in
    `workdir` is created afresh (any earlier one there is removed)."""
    check_free(workdir, topology)
    check_kernel_nodes(topology, kernel_nodes)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    db = f"sqlite:///{(workdir / 'isthmus.db').resolve()}"  # absolute: it names this lab's controller process
    state = LabState(topology.prefix, str(workdir), topology.hosts, topology.muxes, topology.gateways, db, "", "", "")
    state.kernel_nodes = list(kernel_nodes)
    state.controllers = topology.controllers
    state.save()  # first: `down` cleans up whatever happens from here on
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    _owner_file(topology.prefix).write_text(str(workdir.resolve()))
    try:
        for leftover in workdir.glob("isthmus.db*"):
            leftover.unlink()
        _build_network(topology, set(kernel_nodes))
        from isthmus.store import tokens  # here: the CLI imports this module for every command
        from isthmus.store.db import make_engine, upgrade

        if topology.controllers > 1:
            cluster = postgres.start(f"isthmus-pg-{topology.prefix}")
            state.postgres, state.db = cluster.root, cluster.url
            state.save()
        engine = make_engine(state.db)
        upgrade(engine)
        state.operator_token = tokens.create(engine, "operator", "operator")
        node_tokens = {node.name: tokens.create(engine, "node", node.name) for node in topology.nodes()}
        engine.dispose()
        _start_replicas(state)
        guests = [_boot_kernel_node(state, node, node_tokens[node.name], log_level)
                  for node in topology.nodes() if node.name in kernel_nodes]  # fmt: skip
        muxes = [n.underlay for n in topology.nodes() if n.role == "mux"]
        for i, pid in enumerate(tor.start_tor(topology.netns("tor"), tor.run_dir(topology.netns("tor")), muxes)):
            state.record(f"tor-{i}", pid)
        state.save()
        _declare(state, topology)
        for node in topology.nodes():
            if node.name not in kernel_nodes:
                state.record(node.name, _start_agent(state, node, node_tokens[node.name], log_level))
                state.save()
        for guest in guests:
            wait_guest(guest)
        timeout = KERNEL_NODE_DEADLINE if kernel_nodes else 60.0
        _wait_registered(state, [n.name for n in topology.nodes()], timeout)
        _wait_bgp(topology)
    except BaseException:
        down(workdir, topology.prefix)
        raise
    return state


def _build_network(topology: Topology, kernel_nodes: set[str]) -> None:
    fabric = topology.netns("fabric")
    add_netns(fabric)
    ip_batch(fabric, [f"link add {br} type bridge" for br in ("br-under", "br-mgmt", "br-inet", "br-prov")]
             + ["link set br-under mtu 9000 up", "link set br-mgmt up", "link set br-inet up",
                "link set br-prov up"])  # fmt: skip

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
    # The internet carries finished checksums: one a kernel node's virtio NIC left for the hardware (a GRE
    # checksum, say) is completed by the ToR, as a physical NIC would have.
    set_tx_checksum(tor_ns, "inet0", False)
    attach(inet, "br-inet", "i-inet", "eth0", f"{INTERNET_HOST}/24")
    ip_batch(inet, [f"route add default via {TOR_UPLINK}"])
    attach(ctl, "br-mgmt", "m-ctl", "mgmt0", f"{CONTROLLER}/24")
    for node in topology.nodes():
        if node.name in kernel_nodes:
            continue  # its guest's taps join the bridges when it boots
        netns = topology.netns(node.name)
        add_netns(netns)
        sysctl(netns, NODE_SYSCTLS)
        attach(netns, "br-under", f"u-{node.name}", "under0", f"{node.underlay}/{UNDERLAY_PREFIXLEN}", UNDERLAY_MTU)
        attach(netns, "br-mgmt", f"m-{node.name}", "mgmt0", f"{node.management}/24")
        ip_batch(netns, [f"route add default via {TOR_UNDERLAY}"])
        if node.role == "gateway":
            ip_batch(fabric, [f"link add p-{node.name} type veth peer name {PROVIDER_DEVICE} netns {netns}",
                              f"link set p-{node.name} master br-prov up"])  # fmt: skip
            ip_batch(netns, [f"link set {PROVIDER_DEVICE} up"])


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
                raise LabError(f"PUT /admin/{path}: {arm_error(response)}")


def arm_error(response: httpx.Response) -> str:
    """An ARM error answer as `CODE: message`; anything else as its status and (the start of) its text."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text.strip()[:300]}"


def _agent_command(state: LabState, node: Node, token_file: str, ca: str, log_level: str) -> list[str]:
    """The node's agent command line, the same in a namespace and in a guest (but for the files' paths)."""
    command = [
        sys.executable, "-m", "isthmus", "agent", node.role, "--node", node.name,
        "--controller", state.topology.controller_url, "--ca", ca, "--token-file", token_file,
        "--address", node.underlay, "--log-level", log_level, "--metrics", f"{node.management}:{METRICS_PORT}",
    ]  # fmt: skip
    if node.role in ("host", "gateway"):
        command += ["--netns-prefix", state.prefix]
    if node.role in ("mux", "gateway"):
        command += ["--run-dir", str(tor.run_dir(state.topology.netns(node.name)))]
    if node.role == "gateway":
        command += ["--provider-device", PROVIDER_DEVICE]
    return command


def _write_secret(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def _start_agent(state: LabState, node: Node, token: str, log_level: str) -> int:
    token_file = _write_secret(Path(state.workdir) / f"{node.name}.token", token)
    command = ["nsenter", f"--net=/run/netns/{state.topology.netns(node.name)}"]
    command += _agent_command(state, node, token_file, state.ca, log_level)
    with open(Path(state.workdir) / "logs" / f"{node.name}.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    return process.pid


def _boot_kernel_node(state: LabState, node: Node, token: str, log_level: str) -> Guest:
    """Boot `node`'s guest (recorded as vm-NAME), its agent started inside once its network is up. The guest
    sees the host's files but its own /tmp, so its token and the CA are handed over in its share folder; the
    agent's log is share/agent.log, linked from logs/NAME.log."""
    from isthmus.lab.kernel import node as kernel_node
    from isthmus.lab.kernel.guest import GUEST_SHARE

    directory = state.guest_dir(node.name)
    share = directory / "share"
    shutil.rmtree(share, ignore_errors=True)  # an earlier lab's requests and logs
    share.mkdir(parents=True)
    _write_secret(share / "token", token)
    shutil.copyfile(state.ca, share / "ca.pem")
    agent = _agent_command(state, node, f"{GUEST_SHARE}/token", f"{GUEST_SHARE}/ca.pem", log_level)
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    guest = kernel_node.boot_node(node, directory, state.topology.netns("fabric"), NODE_SYSCTLS, agent, env)
    state.record(f"vm-{node.name}", guest.pid)
    state.save()
    log = Path(state.workdir) / "logs" / f"{node.name}.log"
    log.unlink(missing_ok=True)
    log.symlink_to(share / kernel_node.AGENT_LOG)
    return guest


def wait_guest(guest: Guest, timeout: float = KERNEL_NODE_DEADLINE) -> None:
    """Until kernel node `guest`'s network is up; LabError with its console's last lines (the guest stopped)
    if not within `timeout` seconds."""
    from isthmus.lab.kernel import node as kernel_node
    from isthmus.lab.kernel.guest import GuestError

    try:
        guest.wait_for_file(kernel_node.NET_UP, timeout)
    except GuestError as error:
        raise LabError(f"kernel node {error}") from error


def run_in_node(state: LabState, node: str, script: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run bash `script` in kernel node `node`'s guest: (exit code, output). LabError if it is not one, or
    does not answer within `timeout` seconds."""
    from isthmus.lab.kernel import node as kernel_node
    from isthmus.lab.kernel.guest import GuestError

    if node not in state.kernel_nodes:
        raise LabError(f"{node} is not a kernel node of the lab in {state.workdir}")
    try:
        done = kernel_node.run_in(state.guest_dir(node) / "share", script, timeout)
    except GuestError as error:
        raise LabError(str(error)) from error
    return done.exit_code, done.output


def restart_agent(state: LabState, name: str, log_level: str = "info") -> int:
    if name in state.kernel_nodes:
        raise LabError(f"{name} is a kernel node: its agent runs inside its guest")
    node = next(n for n in state.topology.nodes() if n.name == name)
    token = (Path(state.workdir) / f"{name}.token").read_text()
    state.record(name, _start_agent(state, node, token, log_level))
    state.save()
    return state.pids[name]


# A gateway in a qemu guest under TCG runs Python at a twentieth of the host's speed: its watchdog's HTTPS
# renewals take tens to hundreds of milliseconds, so a lab with kernel nodes gives leases room (0.5 s / 3 s).
KERNEL_LEASE = ("--lease-interval", "0.5", "--lease-duration", "3")


def replica_name(replica: int) -> str:
    """The recorded name of controller replica `replica` (0, 1, ...): the first is "controller"."""
    return "controller" if replica == 0 else f"controller-{replica + 1}"


def _start_replicas(state: LabState, ports: Sequence[int | None] = ()) -> None:
    """Start every controller replica, each on loopback (its port in `ports`, or a free one) and on the
    management network, in order (the first becomes the leader)."""
    state.replicas = []
    for replica in range(state.controllers):
        state.replicas.append(start_replica(state, replica, ports[replica] if replica < len(ports) else None))
    state.controller = state.replicas[0]
    state.save()


def start_replica(state: LabState, replica: int, port: int | None = None) -> str:
    """Start controller replica `replica` (0, 1, ...) on loopback (`port`, or a free one) and on the
    management network; its loopback URL."""
    topology, name = state.topology, replica_name(replica)
    listen = f"{topology.netns('ctl')}:{CONTROLLER}:{topology.controller_port(replica)}"
    extra: tuple[str, ...] = ("--listen-netns", listen)
    if topology.controllers > 1:
        extra += ("--name", name)
    if state.kernel_nodes:
        extra += KERNEL_LEASE
    controller = start_controller(state.db, Path(state.workdir), names=("localhost", "127.0.0.1", CONTROLLER),
                                  extra=extra, port=port, log_name=name)  # fmt: skip
    state.record(name, controller.pid)
    state.ca = str(controller.ca)
    if replica < len(state.replicas):
        state.replicas[replica] = controller.url
    state.save()
    return controller.url


def kill_recorded(state: LabState, name: str) -> None:
    """SIGKILL the recorded process `name` (a node's agent): what it started itself runs on."""
    if name in state.pids and state.running(name):
        _kill(state.pids[name])


def stop_controller(state: LabState) -> None:
    """Stop every controller replica (by its recorded PID): the agents and the data plane carry on."""
    for replica in range(state.controllers):
        name = replica_name(replica)
        pid = state.pids.get(name)
        if pid is not None and state.running(name):
            stop(pid)
        state.pids.pop(name, None)
    state.save()


def start_again_controller(state: LabState) -> None:
    """Start every controller replica again on the same store, CA, loopback ports and management addresses
    (so that clients made before keep working)."""
    _start_replicas(state, [int(url.rsplit(":", 1)[1]) for url in state.replicas or [state.controller]])


def leader(state: LabState) -> int | None:
    """The replica (0, 1, ...) that says it leads, if one answers so."""
    for replica, url in enumerate(state.replicas):
        if not state.running_replica(replica):
            continue
        try:
            if httpx.get(f"{url}/healthz", verify=state.ca, timeout=2).json()["leader"]:
                return replica
        except (httpx.HTTPError, ValueError, KeyError):
            continue
    return None


def kill_replica(state: LabState, replica: int) -> None:
    """SIGKILL controller replica `replica`'s process group (by its recorded PID), and reap it."""
    name = replica_name(replica)
    if name in state.pids and state.running(name):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pids[name], 9)
        stop(state.pids[name], timeout=2.0)
    state.pids.pop(name, None)
    alive = [url for i, url in enumerate(state.replicas) if state.running_replica(i)]
    state.controller = alive[0] if alive else state.controller  # what clients made from now on use
    state.save()


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
    """Remove the lab in `workdir`: stop the processes its state recorded (agents, ToR daemons, the controller)
    and remove every namespace with its prefix (ending the processes inside), then its state file. Safe to
    run twice, after a crash, or after a half-finished `up`. Without a state file only namespaces named
    `prefix`* are removed, and only when `prefix` is given and no other lab's state claims it; with neither,
    NoLab."""
    state = load_state(workdir)
    if state is None and prefix is None:
        raise NoLab(workdir)
    if state is not None and prefix not in (None, state.prefix):
        raise LabError(f"the lab in {workdir} has the prefix {state.prefix}, not {prefix}")
    if state is None:
        assert prefix is not None
        owner = _owner(prefix)
        if owner is not None and owner != workdir.resolve():
            raise LabError(f"namespaces named {prefix}* belong to the lab in {owner}: `isthmus lab down --workdir "
                           f"{owner}` removes it")  # fmt: skip
    else:
        prefix = state.prefix
    removed = []
    if state is not None:
        if "controller" not in state.pids and (pid := _unrecorded_controller(state)) is not None:
            state.record("controller", pid)
        agents = {n.name for n in state.topology.nodes()}
        replicas = {replica_name(i) for i in range(state.controllers)}
        order = sorted(state.pids, key=lambda name: (name in replicas, name not in agents))  # controllers last
        if state.kernel_nodes:
            from isthmus.lab.kernel.guest import stop_recorded

            for node in state.kernel_nodes:  # by the PID each guest's workdir recorded (checked), even unsaved
                if stop_recorded(state.guest_dir(node)):
                    removed.append(f"kernel node {node}")
        for name in order:
            pid = state.pids[name]
            if name.startswith("vm-"):
                continue
            if state.running(name):
                if name in replicas or name in agents:
                    stop(pid)  # graceful first: they were started in their own sessions
                else:
                    _kill(pid)
                removed.append(f"process {name} ({pid})")
    if state is not None and state.postgres:
        postgres.stop(postgres.Cluster(state.postgres, state.db))
        removed.append(f"PostgreSQL cluster {state.postgres}")
    for netns in sorted(n for n in list_netns() if n.startswith(prefix)):
        for pid in netns_pids(netns):
            _kill(pid)
        delete_netns(netns)
        removed.append(f"netns {netns}")
    for run_dir in RUN_ROOT.glob(f"{prefix}*"):
        shutil.rmtree(run_dir, ignore_errors=True)
    _owner_file(prefix).unlink(missing_ok=True)
    (workdir / SITES_FILE).unlink(missing_ok=True)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return removed


def _unrecorded_controller(state: LabState) -> int | None:
    """The controller an interrupted `up` started before it could record its PID: the process serving this
    lab's store (`controller --db DB`, DB the absolute path in the state)."""
    if not state.db.startswith("sqlite:////"):
        return None  # a state from before the path was absolute: it could name another lab's store
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "controller" in args and "--db" in args and args[args.index("--db") + 1 :][:1] == [state.db]:
            return int(entry.name)
    return None


def _owner_file(prefix: str) -> Path:
    return RUN_ROOT / f"{prefix}lab"  # not a directory: the run-directory sweep in `down` leaves it to unlink


def _owner(prefix: str) -> Path | None:
    """The workdir of the lab whose state (still there) claims `prefix`, if any."""
    try:
        workdir = Path(_owner_file(prefix).read_text())
    except OSError:
        return None
    state = load_state(workdir)
    return workdir if state is not None and state.prefix == prefix else None


def _ours(pid: int, started: int | None = None) -> bool:
    """Still the process the lab started: an isthmus, FRR or strongSwan (a site's charon) command line, started
    when it was (if known)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    if started is not None and _start_ticks(pid) != started:
        return False
    return any(mark in cmdline for mark in ("isthmus", "/usr/lib/frr/", "/usr/lib/ipsec/charon"))


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (/proc/PID/stat field 22); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def kind(name: str) -> str:
    """What a process the lab recorded is: the controller, a ToR daemon, a kernel node's qemu, or an agent."""
    if name.startswith("vm-"):
        return "kernel node"
    return "controller" if name.startswith("controller") else "ToR daemon" if name.startswith("tor-") else "agent"


def status(workdir: Path) -> dict[str, Any]:
    """What the lab in `workdir` started and whether it still runs; `dead` names everything that does not
    (a process gone, a namespace missing, the controller not answering, an agent not reporting). NoLab if
    there is none."""
    state = load_state(workdir)
    if state is None:
        raise NoLab(workdir)
    processes = {name: {"kind": kind(name), "pid": pid, "running": state.running(name)}
                 for name, pid in state.pids.items()}  # fmt: skip
    dead = [f"{p['kind']} {name} (pid {p['pid']})" for name, p in processes.items() if not p["running"]]
    topology = state.topology
    expected = [topology.netns(n) for n in ("fabric", "tor", "inet", "ctl")]
    expected += [topology.netns(n.name) for n in topology.nodes() if n.name not in state.kernel_nodes]
    present = set(list_netns())
    dead += [f"netns {netns}" for netns in expected if netns not in present]
    nodes: list[dict[str, Any]] = []
    try:
        if not state.controller:
            raise LabError("not recorded: its `lab up` did not finish")
        with state.operator() as http:
            response = http.get("/admin/nodes")
            response.raise_for_status()
            nodes = response.json()["value"]
    except LabError as error:
        dead.append(f"controller {error}")
    except (httpx.HTTPError, ValueError, KeyError) as error:
        dead.append(f"controller at {state.controller} not answering ({error})")
    else:
        reported = {node["name"]: node for node in nodes}
        for node in topology.nodes():
            if not reported.get(node.name, {}).get("live"):
                dead.append(f"agent {node.name} not reporting to the controller")
    return {"workdir": str(workdir), "prefix": state.prefix, "controller": state.controller,
            "processes": processes, "namespaces": len(expected) - sum(n not in present for n in expected),
            "nodes": nodes, "dead": dead}  # fmt: skip
