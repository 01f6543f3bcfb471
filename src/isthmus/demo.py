"""`make demo`: the whole fabric in namespaces, two tenants with the same address space, and their VMs
used for real: east-west across hosts, public IPs behind NSGs, outbound NAT, isolation, flow verify; then the
gateway pool (2+1): a site-to-site VPN from tenant A's VNet to an on-premises site, GRE and L3 forwarding from
tenant B's to a branch office and a provider's router, the node carrying B's gateway killed while datagrams flow
through every connection (the outage measured), a planned drain of A's, and the dashboard's address.

The lab is removed at the end (ISTHMUS_DEMO_KEEP=1 keeps it: `isthmus lab status --workdir var/demo`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from isthmus.lab import fabric, faults, gateway_pool, probe, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.outage import OutageProbe, Stream
from isthmus.lab.sites import L3End
from isthmus.lab.tenant import Tenant, TenantError, rule
from isthmus.lab.topology import INTERNET_HOST, Topology
from isthmus.linux.run import ip_json
from isthmus.model.admin import drain_ended

console = Console()
WORKDIR = Path("var/demo")
PREFIX = "demo-"
TENANT_A = "5f2c0a4e-0000-4000-8000-00000000de0a"
TENANT_B = "5f2c0a4e-0000-4000-8000-00000000de0b"
VNET_SPACE = "100.64.0.0/16"  # both tenants'
SITE, ON_PREMISES = "198.51.100.20", "192.0.2.0/26"  # tenant A's on-premises site
BRANCH, BRANCH_NET, GRE_KEY = "198.51.100.21", "192.0.2.64/26", 42  # tenant B's branch office, over GRE
LINK, PROVIDER_NET = ("198.19.1.1", "198.19.1.2"), "192.0.2.128/26"  # B's L3 link (its end, the router's), behind it
PROBE_PORT = 7400  # the outage probe's first port; one per connection
OUTAGE_LIMIT = 15.0  # s: the longest the demo waits for a connection to be through again
DRAIN_LIMIT = 40.0  # s: a drain step waits up to 15 s for Connected; one VNet gateway moves here


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def show(what: str, ok: bool) -> None:
    console.print(f"  {'[green]yes[/green]' if ok else '[red]no[/red] '}  {what}")


def cli(env: dict[str, str], *args: str, who: str = "") -> None:
    console.print(f"[dim]$ isthmus {' '.join(args)}{f'  # as {who}' if who else ''}[/dim]")
    subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, check=True)


def build_tenant(lab: fabric.LabState, subscription: str, tag: str) -> tuple[Tenant, dict[str, vms.Vm]]:
    t = Tenant(lab, subscription, group="demo")
    t.nsg("web", [rule("allow-http", 100, protocol="Tcp", ports="80", source="Internet"),
                  rule("deny-telnet", 200, "Deny", protocol="Tcp", ports="23")])  # fmt: skip
    t.vnet("vnet1", VNET_SPACE, {"web": "100.64.1.0/24", "app": "100.64.2.0/24"}, nsg="web")
    t.public_ip("web-ip")
    t.nic(f"{tag}-web", "vnet1", "web", public_ip="web-ip")
    t.nic(f"{tag}-app", "vnet1", "app")
    made = {
        "web": vms.create(lab, f"{tag}-web", t.id(f"networkInterfaces/{tag}-web"), "h1"),
        "app": vms.create(lab, f"{tag}-app", t.id(f"networkInterfaces/{tag}-app"), "h2"),
    }
    return t, made


@dataclass(frozen=True)
class Link:
    """A tenant's connection to a site, and the VM whose datagrams go through it."""

    tenant: Tenant
    connection: str
    gateway: str  # the VNet gateway's name
    vm: vms.Vm
    site: sites.Site

    @property
    def gateway_id(self) -> str:
        return self.tenant.id(f"virtualNetworkGateways/{self.gateway}")


def vnet_gateway(t: Tenant, name: str) -> str:
    """A VPN gateway `name` in vnet1, given its GatewaySubnet now, owning a new public IP `name`-ip: its VIP."""
    t.vnet("vnet1", VNET_SPACE, {"web": "100.64.1.0/24", "app": "100.64.2.0/24",
                                 "GatewaySubnet": "100.64.255.0/27"}, nsg="web")  # fmt: skip
    vip = t.public_ip(f"{name}-ip")
    t.vpn_gateway(name, "vnet1", f"{name}-ip")
    return vip


def connected(t: Tenant, connection: str, since: float) -> None:
    done = t.wait_connection(connection, timeout=30)["properties"]
    show(f"connection {connection} ({done['connectionType']}) is {done['connectionStatus']} "
         f"{time.monotonic() - since:.2f} s after its PUT", done["connectionStatus"] == "Connected")  # fmt: skip


def pings(netns: str, address: str, timeout: float = 10.0) -> bool:
    """Whether `address` answers a ping within `timeout` s (a new connection's routes reach the hosts meanwhile)."""
    return gateway_pool.until(lambda: probe.ping(netns, address), timeout, every=0.1)


def reach(vm: vms.Vm, site: sites.Site, port: int, how: str) -> None:
    host = site.host_address
    show(f"{vm.name} ({vm.host}) pings the host {host} behind {site.name} {how}", pings(vm.netns, host))
    with probe.server(site.host_netns, host, port) as server:
        show(f"{vm.name} -> {host} TCP {port} and back, from {vm.addresses[0]} (no NAT on the way)",
             probe.tcp_echo(vm.netns, host, port) and server.peers[-1][0] == vm.addresses[0])  # fmt: skip


def vpn(lab: fabric.LabState, a: Tenant, web: vms.Vm) -> Link:
    """Tenant A's VPN to its on-premises site: the site's strongSwan configured from the script the API
    writes for it (its shared key filled in from getSharedKey, which only the owner may call)."""
    step("a site-to-site VPN: a gateway on the 2+1 pool, IKEv2 by strongSwan (userspace ESP on this kernel)")
    vnet_gateway(a, "vpn")
    a.local_gateway("onprem", SITE, [ON_PREMISES])
    started = time.monotonic()
    a.connection("to-onprem", "vpn", "onprem", "Demo-Shared-Key-1")
    api = {"api-version": "2026-03-01"}
    device = {"vendor": "strongSwan", "deviceFamily": "swanctl", "firmwareVersion": "5.9"}
    script = a.http.post(a.id("connections/to-onprem/vpndeviceconfigurationscript"), params=api, json=device).json()
    key = a.http.get(a.id("connections/to-onprem/sharedkey"), params=api).json()["value"]
    site = sites.create(lab, "onprem", SITE, ON_PREMISES, script.replace("PUT-THE-SHARED-KEY-HERE", key))
    console.print(
        f"  site {SITE} ({ON_PREMISES}, host {site.host_address}) configured from vpndeviceconfigurationscript"
    )
    connected(a, "to-onprem", started)
    reach(web, site, 7000, "through the tunnel")
    deadline = time.monotonic() + 8  # counters travel with the heartbeat (every 5 s), not with each change
    counters = a.get("connections/to-onprem")["properties"]
    while not counters["egressBytesTransferred"] and time.monotonic() < deadline:
        time.sleep(0.2)
        counters = a.get("connections/to-onprem")["properties"]
    console.print(f"  bytes in/out as the gateway counts them: {counters['ingressBytesTransferred']} / "
                  f"{counters['egressBytesTransferred']}")  # fmt: skip
    return Link(a, "to-onprem", "vpn", web, site)


def gre_and_l3(lab: fabric.LabState, b: Tenant, web: vms.Vm) -> list[Link]:
    """Tenant B's VNet gateway with a GRE connection to a branch office (a scapy endpoint of its own) and an L3
    forwarding connection to a provider's router (FRR) on the provider network."""
    step("tenant B's gateway: GRE to a branch office, L3 forwarding to a provider's router")
    vip = vnet_gateway(b, "gw")
    placed = gateway_pool.placed(lab, b.id("virtualNetworkGateways/gw")) or {"reason": "placed nowhere"}
    console.print(f"  VNet gateway gw, VIP {vip}: {placed['reason']}")
    b.local_gateway("branch", BRANCH, [BRANCH_NET])
    branch = sites.create(lab, "branch", BRANCH, BRANCH_NET, gre=GreEnd(vip, GRE_KEY, routes=(VNET_SPACE,)))
    console.print(f"  branch {BRANCH} ({BRANCH_NET}, host {branch.host_address}): GRE key {GRE_KEY} to {vip}")
    started = time.monotonic()
    b.gre_connection("to-branch", "gw", "branch", key=GRE_KEY)
    connected(b, "to-branch", started)
    reach(web, branch, 7001, "over GRE")
    b.local_gateway("provider", LINK[1], [PROVIDER_NET])
    provider = sites.create(lab, "provider", LINK[1], PROVIDER_NET,
                            l3=L3End(f"{LINK[1]}/30", LINK[0], (VNET_SPACE,)))  # fmt: skip
    console.print(f"  provider router {LINK[1]} on link {LINK[0]}/30 ({PROVIDER_NET}, host {provider.host_address})")
    started = time.monotonic()
    b.l3_connection("to-provider", "gw", "provider", localAddress=f"{LINK[0]}/30", nextHop=LINK[1])
    connected(b, "to-provider", started)
    reach(web, provider, 7002, "routed on the link")
    return [Link(b, "to-branch", "gw", web, branch), Link(b, "to-provider", "gw", web, provider)]


def outage_probe(links: list[Link]) -> OutageProbe:
    """A datagram every 10 ms from each link's VM to the host behind its site."""
    streams = [Stream(link.connection, link.vm.netns, link.vm.addresses[0], link.site.host_netns,
                      link.site.host_address, PROBE_PORT + i) for i, link in enumerate(links)]  # fmt: skip
    return OutageProbe(streams, 0.01, limit=300)


def latest_event(lab: fabric.LabState) -> int:
    with lab.operator() as http:
        latest = http.get("/admin/events", params={"limit": 1}).json()["value"]
    return int(latest[-1]["id"]) if latest else 0


def events_after(lab: fabric.LabState, after: int) -> list[dict[str, Any]]:
    with lab.operator() as http:
        events: list[dict[str, Any]] = http.get("/admin/events", params={"after": after, "limit": 1000}).json()["value"]
    return events


def names(text: str) -> str:
    """`text` with each ARM id in it as its resource's name."""
    return re.sub(r"/subscriptions/\S*/([^/\s,;:)]+)", r"\1", text)


def tell(event: dict[str, Any], since: float) -> None:
    """One event of the story, at its time from `since` (wall clock), naming the VNet gateway it is about."""
    offset = datetime.fromisoformat(event["at"]).timestamp() - since
    message = names(event["message"])
    ids = ((event.get("details") or {}).get("virtualNetworkGateway"), event.get("subject"))
    about = next((names(i) for i in ids if i and "/virtualnetworkgateways/" in i.lower()), "")
    if about and not message.startswith(about):
        message = f"{about}: {message}"
    console.print(f"  [dim]{offset:+6.2f} s {event['kind']:<22}[/dim] {message}")


def follow(lab: fabric.LabState, after: int, since: float, kinds: set[str],
           until: Callable[[dict[str, Any]], bool], timeout: float) -> bool:  # fmt: skip
    """Print the events of `kinds` after event `after` as they come, until `until` says so; whether it did
    within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events_after(lab, after):
            after = int(event["id"])
            if event["kind"] in kinds:
                tell(event, since)
            if until(event):
                return True
        time.sleep(0.2)
    return False


def roles(lab: fabric.LabState) -> str:
    return ", ".join(f"{node} {g['role']}" for node, g in sorted(gateway_pool.gateway_nodes(lab).items()))


def carrier(lab: fabric.LabState, link: Link) -> str:
    """The node carrying `link`'s VNet gateway."""
    node = gateway_pool.node_of(lab, link.gateway_id)
    if node is None:
        raise fabric.LabError(f"VNet gateway {link.gateway} is placed on no gateway node")
    return node


def kill_carrier(lab: fabric.LabState, outage: OutageProbe, links: list[Link], chosen: Link) -> None:
    """kill -9 of every process of the node carrying `chosen` while datagrams flow through every link; the
    outage of each link it carried, and that the others lost nothing; then its agent is started again."""
    victim = carrier(lab, chosen)
    carried = [link for link in links if gateway_pool.node_of(lab, link.gateway_id) == victim]
    others = [link for link in links if link not in carried]
    standbys = {node for node, g in gateway_pool.gateway_nodes(lab).items() if g["role"] == "standby"}
    step(f"an unplanned failure: kill -9 of {victim}, carrying {' and '.join(link.connection for link in carried)}")
    console.print(f"  a datagram every 10 ms from each VM through {', '.join(link.connection for link in links)}")
    console.print(f"  before: {roles(lab)}")
    after, wall = latest_event(lab), time.time()
    at = outage.mark(f"kill {victim}")
    faults.kill_node(lab.topology.netns(victim))
    for link in carried:
        gap = outage.wait_outage(link.connection, at, OUTAGE_LIMIT)
        now = gateway_pool.node_of(lab, link.gateway_id)
        who = f"standby {now}" if now in standbys else str(now)
        if gap is None or gap.end_ns is None or gap.duration_ms is None:
            show(f"{link.connection}: not through again within {OUTAGE_LIMIT:g} s", False)
        else:
            show(f"{link.connection}: outage {gap.duration_ms / 1000:.2f} s ({gap.lost} datagrams lost), through "
                 f"again {(gap.end_ns - at) / 1e9:.2f} s after the kill: {who} took over", now != victim)  # fmt: skip
            if (flowed := (gap.first_sent_ns - at) / 1e9) > 0.2:
                console.print(f"  [dim]  it flowed on through {victim}'s kernel for {flowed:.2f} s: kill -9 ends "
                              "processes, not forwarding[/dim]")  # fmt: skip
    story = {"lease.lost", "placement.moved", "placement.role", "connections.connected"}
    for event in events_after(lab, after):
        if event["kind"] in story:
            tell(event, wall)
    for link in carried:
        state = link.tenant.wait_connection(link.connection, timeout=OUTAGE_LIMIT)["properties"]["connectionStatus"]
        show(f"{link.connection} is {state} again", state == "Connected")
    console.print(f"  {victim}'s agent is started again, as after a reboot")
    back = gateway_pool.back_up(lab, victim)
    role = gateway_pool.gateway_nodes(lab)[victim]["role"]
    show(f"{victim} is back and rejoined as the {role}: it takes nothing back ({roles(lab)})",
         back and role == "standby")  # fmt: skip
    for link in others:
        lost = sum(g.lost for g in outage.gaps_since(link.connection, at))
        show(f"{link.connection}, on {carrier(lab, link)}, lost {lost} datagrams through all of it", lost == 0)


def drain_carrier(lab: fabric.LabState, outage: OutageProbe, link: Link) -> None:
    """A planned move: drain the node carrying `link` (each VNet gateway it carries moves, the next once the last
    is Connected where it went), the outage of the move, then undrain it."""
    node = carrier(lab, link)
    step(f"a planned move: drain {node}, carrying {link.connection}, then undrain it")
    after, wall = latest_event(lab), time.time()
    at = outage.mark(f"drain {node}")
    with lab.operator() as http:
        response = http.post(f"/admin/gateways/{node}/drain")
    if response.status_code >= 300:
        show(f"drain {node}: {response.status_code} {response.json()['error']['message']}", False)
        return
    console.print(f"  POST /admin/gateways/{node}/drain: {response.json()['properties']['serviceState']}")
    done = follow(lab, after, wall, {"drain.step", "drain.connected", "drain.timeout", "drain.done"}, drain_ended(node),
                  DRAIN_LIMIT)  # fmt: skip
    state = link.tenant.wait_connection(link.connection, timeout=OUTAGE_LIMIT)["properties"]["connectionStatus"]
    time.sleep(outage.grace + 0.2)  # every datagram sent until now is counted, arrived or lost
    gaps = outage.closed_gaps_since(link.connection, at)
    longest = max((g.duration_ms or 0.0 for g in gaps), default=0.0) / 1000
    now = gateway_pool.node_of(lab, link.gateway_id)
    show(f"{link.connection} moved {node} -> {now}, {state}: outage {longest:.2f} s "
         f"({sum(g.lost for g in gaps)} datagrams lost)", done and now != node and state == "Connected")  # fmt: skip
    with lab.operator() as http:
        undrained = http.post(f"/admin/gateways/{node}/undrain").json()["properties"]["serviceState"]
    console.print(f"  POST /admin/gateways/{node}/undrain: {undrained}")
    rejoined = gateway_pool.until(lambda: gateway_pool.gateway_nodes(lab)[node]["role"] == "standby", 10, every=0.1)
    show(f"{node} rejoined as the standby ({roles(lab)})", rejoined)


def dashboard(lab: fabric.LabState, a: Tenant) -> None:
    step("the dashboard")
    console.print(f"  open [bold]{lab.controller}/ui/[/bold] on this machine; its certificate is from the lab's CA,")
    console.print(f"  {Path(lab.ca).resolve()}")
    console.print("  log in with the operator token, which sees everything:")
    console.print(f"    {lab.operator_token}", soft_wrap=True)  # on one line, to be copied whole
    console.print(f"  or with a tenant's, which sees only its own subscription (tenant A's, {TENANT_A}):")
    console.print(f"    {token_of(a)}", soft_wrap=True)
    if not os.environ.get("ISTHMUS_DEMO_KEEP"):
        console.print("  [dim]this run removes the lab now: ISTHMUS_DEMO_KEEP=1 make demo keeps it to look at[/dim]")


def token_of(t: Tenant) -> str:
    return t.http.headers["Authorization"].removeprefix("Bearer ")


def main() -> None:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    fabric.down(WORKDIR, PREFIX)  # a demo lab left from an earlier run
    step("isthmus lab up: ToR (FRR), MUX, 2 hosts, 3 gateway nodes, internet host, controller")
    lab = fabric.up(WORKDIR, Topology(PREFIX, hosts=2, muxes=1, gateways=3), log_level="warning")
    try:
        run(lab)
    finally:
        if os.environ.get("ISTHMUS_DEMO_KEEP"):
            console.print(f"lab kept: isthmus lab status --workdir {WORKDIR}; isthmus lab down --workdir {WORKDIR}")
        else:
            step("isthmus lab down")
            console.print(f"  removed {len(fabric.down(WORKDIR, PREFIX))} namespaces and processes")


def run(lab: fabric.LabState) -> None:
    step("two tenants, same address space 100.64.0.0/16: NSG, VNet, public IP, NICs, VMs on h1 and h2")
    a, a_vms = build_tenant(lab, TENANT_A, "a")
    b, b_vms = build_tenant(lab, TENANT_B, "b")
    for tenant, made in (("A", a_vms), ("B", b_vms)):
        for vm in made.values():
            console.print(f"  tenant {tenant}: VM {vm.name} on {vm.host}: {', '.join(vm.addresses)}")
    vip = a.get("publicIPAddresses/web-ip")["properties"]["ipAddress"]
    outbound = lab.operator().get("/admin/hosts/h2").json()["properties"]["outboundNatAddress"]
    inet = lab.topology.netns("inet")
    web, app = a_vms["web"], a_vms["app"]

    learned = {r["dst"]: r.get("gateway") for r in ip_json(lab.topology.netns("tor"), "route", "show", "proto", "bgp")}
    show(f"the ToR learned {vip}/32 over BGP from the MUX (next hop {learned.get(vip)})", vip in learned)

    step("using the VMs")
    servers = [probe.Server(vm.netns, "0.0.0.0", port).start()
               for vm in (*a_vms.values(), *b_vms.values()) for port in (80, 23, 8080)]  # fmt: skip
    internet = probe.Server(inet, INTERNET_HOST, 9000).start()
    try:
        show(f"A web (h1) pings A app (h2) over VXLAN: {app.addresses[0]}", probe.ping(web.netns, app.addresses[0]))
        show(
            "A app -> A web TCP 8080 (inside the VNet, AllowVnetInBound)",
            probe.tcp_echo(app.netns, web.addresses[0], 8080),
        )
        show(f"internet -> A's public IP {vip}:80 (allow-http)", probe.tcp_echo(inet, vip, 80))
        show(f"internet -> {vip}:8080 filtered by the NSG (DenyAllInBound)", not probe.tcp_open(inet, vip, 8080, 0.5))
        show("A app (no public IP) -> internet host", probe.tcp_echo(app.netns, INTERNET_HOST, 9000))
        seen = sorted({peer[0] for peer in internet.peers})
        show(f"the internet host saw h2's outbound NAT address {outbound}: {seen}", seen == [outbound])
        show(f"internet -> outbound address {outbound} opens nothing", not probe.tcp_open(inet, outbound, 9000, 0.5))
        b_seen_before = sum(len(s.peers) for s in servers[6:])
        probe.tcp_open(a_vms["web"].netns, b_vms["app"].addresses[0], 8080, 0.3)
        show("tenant A reaching B's private address lands in A's own VNet, never in B",
             sum(len(s.peers) for s in servers[6:]) == b_seen_before)  # fmt: skip

        step("a rule change, live: allow 8080 from the Internet")
        a.security_rule("web", rule("allow-8080", 110, protocol="Tcp", ports="8080", source="Internet"))
        a.wait_succeeded("networkSecurityGroups/web")
        show(f"internet -> {vip}:8080 now open", probe.tcp_echo(inet, vip, 8080))
    finally:
        internet.close()
        for server in servers:
            server.close()

    to_onprem = vpn(lab, a, web)
    links = [to_onprem, *gre_and_l3(lab, b, b_vms["web"])]
    with outage_probe(links) as outage:
        time.sleep(1.0)  # a clean stretch before any fault
        kill_carrier(lab, outage, links, links[1])
        drain_carrier(lab, outage, to_onprem)

    step("bad input is refused with Azure's error and changes nothing")
    try:
        a.security_rule("web", rule("too-low", 50))
    except TenantError as error:
        console.print(f"  {error.response.status_code} {error.response.json()['error']}")

    what_the_cli_shows(lab, a, b, web)
    dashboard(lab, a)


def what_the_cli_shows(lab: fabric.LabState, a: Tenant, b: Tenant, web: vms.Vm) -> None:
    step("what the CLI shows")
    env = {**os.environ, "ISTHMUS_CONTROLLER": lab.controller, "ISTHMUS_CA": lab.ca}
    tenant_env = {**env, "ISTHMUS_TOKEN": token_of(a), "ISTHMUS_SUBSCRIPTION": TENANT_A}
    cli(tenant_env, "nsg", "show", "web", "--group", "demo")
    nic = a.id("networkInterfaces/a-web")
    cli(
        tenant_env,
        "nsg",
        "verify",
        "--nic",
        nic,
        "--local",
        f"{web.addresses[0]}:23",
        "--remote",
        f"{INTERNET_HOST}:40000",
    )
    cli(tenant_env, "publicip", "list")
    cli(tenant_env, "connection", "list")
    cli({**env, "ISTHMUS_TOKEN": token_of(b), "ISTHMUS_SUBSCRIPTION": TENANT_B}, "connection", "list", who="tenant B")
    cli({**env, "ISTHMUS_TOKEN": lab.operator_token}, "gateway", "list")
    cli({**env, "ISTHMUS_TOKEN": lab.operator_token}, "node", "list")
    cli(env, "lab", "vm", "list", "--workdir", str(WORKDIR))


if __name__ == "__main__":
    main()
