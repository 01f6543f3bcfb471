"""`make demo`: the whole fabric in namespaces, two tenants with the same address space, and their VMs
used for real: east-west across hosts, public IPs behind NSGs, outbound NAT, isolation, flow verify, and a
site-to-site VPN from tenant A's VNet to an on-premises site.

The lab is removed at the end (ISTHMUS_DEMO_KEEP=1 keeps it: `isthmus lab status --workdir var/demo`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from isthmus.lab import fabric, probe, sites, vms
from isthmus.lab.tenant import Tenant, TenantError, rule
from isthmus.lab.topology import INTERNET_HOST, Topology
from isthmus.linux.run import ip_json

console = Console()
WORKDIR = Path("var/demo")
PREFIX = "demo-"
TENANT_A = "5f2c0a4e-0000-4000-8000-00000000de0a"
TENANT_B = "5f2c0a4e-0000-4000-8000-00000000de0b"
SITE, ON_PREMISES = "198.51.100.20", "192.0.2.0/26"  # tenant A's on-premises site


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def show(what: str, ok: bool) -> None:
    console.print(f"  {'[green]yes[/green]' if ok else '[red]no[/red] '}  {what}")


def cli(env: dict[str, str], *args: str) -> None:
    console.print(f"[dim]$ isthmus {' '.join(args)}[/dim]")
    subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, check=True)


def build_tenant(lab: fabric.LabState, subscription: str, tag: str) -> tuple[Tenant, dict[str, vms.Vm]]:
    t = Tenant(lab, subscription, group="demo")
    t.nsg("web", [rule("allow-http", 100, protocol="Tcp", ports="80", source="Internet"),
                  rule("deny-telnet", 200, "Deny", protocol="Tcp", ports="23")])  # fmt: skip
    t.vnet("vnet1", "100.64.0.0/16", {"web": "100.64.1.0/24", "app": "100.64.2.0/24"}, nsg="web")
    t.public_ip("web-ip")
    t.nic(f"{tag}-web", "vnet1", "web", public_ip="web-ip")
    t.nic(f"{tag}-app", "vnet1", "app")
    made = {
        "web": vms.create(lab, f"{tag}-web", t.id(f"networkInterfaces/{tag}-web"), "h1"),
        "app": vms.create(lab, f"{tag}-app", t.id(f"networkInterfaces/{tag}-app"), "h2"),
    }
    return t, made


def vpn(lab: fabric.LabState, a: Tenant, web: vms.Vm) -> None:
    """Tenant A's VPN to its on-premises site: the site's strongSwan configured from the script the API
    writes for it (its shared key filled in from getSharedKey, which only the owner may call)."""
    step("a site-to-site VPN: a gateway on the 2+1 pool, IKEv2 by strongSwan (userspace ESP on this kernel)")
    a.vnet("vnet1", "100.64.0.0/16", {"web": "100.64.1.0/24", "app": "100.64.2.0/24",
                                      "GatewaySubnet": "100.64.255.0/27"}, nsg="web")  # fmt: skip
    a.public_ip("vpn-ip")
    a.vpn_gateway("vpn", "vnet1", "vpn-ip")
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
    done = a.wait_connection("to-onprem", timeout=30)["properties"]
    show(f"connection to-onprem is {done['connectionStatus']} {time.monotonic() - started:.2f} s after its PUT",
         done["connectionStatus"] == "Connected")  # fmt: skip
    on_prem = site.host_address
    show(f"A web (h1) pings the on-premises host {on_prem} through the tunnel", probe.ping(web.netns, on_prem, 2))
    with probe.server(site.host_netns, on_prem, 7000) as server:
        show(f"A web -> {on_prem} TCP 7000 and back, from {web.addresses[0]} (no NAT on the way)",
             probe.tcp_echo(web.netns, on_prem, 7000) and server.peers[-1][0] == web.addresses[0])  # fmt: skip
    deadline = time.monotonic() + 8  # counters travel with the heartbeat (every 5 s), not with each change
    counters = a.get("connections/to-onprem")["properties"]
    while not counters["egressBytesTransferred"] and time.monotonic() < deadline:
        time.sleep(0.2)
        counters = a.get("connections/to-onprem")["properties"]
    console.print(f"  bytes in/out as the gateway counts them: {counters['ingressBytesTransferred']} / "
                  f"{counters['egressBytesTransferred']}")  # fmt: skip


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
    _b, b_vms = build_tenant(lab, TENANT_B, "b")
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

    vpn(lab, a, web)

    step("bad input is refused with Azure's error and changes nothing")
    try:
        a.security_rule("web", rule("too-low", 50))
    except TenantError as error:
        console.print(f"  {error.response.status_code} {error.response.json()['error']}")

    step("what the CLI shows")
    env = {**os.environ, "ISTHMUS_CONTROLLER": lab.controller, "ISTHMUS_CA": lab.ca}
    token = a.http.headers["Authorization"].removeprefix("Bearer ")
    tenant_env = {**env, "ISTHMUS_TOKEN": token, "ISTHMUS_SUBSCRIPTION": TENANT_A}
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
    cli({**env, "ISTHMUS_TOKEN": lab.operator_token}, "gateway", "list")
    cli({**env, "ISTHMUS_TOKEN": lab.operator_token}, "node", "list")
    cli(env, "lab", "vm", "list", "--workdir", str(WORKDIR))


if __name__ == "__main__":
    main()
