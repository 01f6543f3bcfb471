"""`make demo`: the whole fabric in namespaces, two tenants with the same address space, and their VMs
used for real: east-west across hosts, public IPs behind NSGs, outbound NAT, isolation, flow verify.

The lab is removed at the end (ISTHMUS_DEMO_KEEP=1 keeps it: `isthmus lab status --workdir var/demo`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from isthmus.lab import fabric, probe, vms
from isthmus.lab.tenant import Tenant, TenantError, rule
from isthmus.lab.topology import INTERNET_HOST, Topology
from isthmus.linux.run import ip_json

console = Console()
WORKDIR = Path("var/demo")
PREFIX = "demo-"
TENANT_A = "5f2c0a4e-0000-4000-8000-00000000de0a"
TENANT_B = "5f2c0a4e-0000-4000-8000-00000000de0b"


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
    cli({**env, "ISTHMUS_TOKEN": lab.operator_token}, "node", "list")
    cli(env, "lab", "vm", "list", "--workdir", str(WORKDIR))


if __name__ == "__main__":
    main()
