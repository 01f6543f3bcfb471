"""`isthmus lab`: build, inspect and remove the namespace fabric; create VMs and run commands in them; what the
MUXes announce. A lab is its workdir (--workdir, ISTHMUS_LAB): the state file there names what it started."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer

from isthmus.cli.client import CliError, Column, emit, health, settings, show, when
from isthmus.lab import fabric, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.mux_routes import collect
from isthmus.lab.topology import Topology
from isthmus.model.ids import ResourceId

lab_app = typer.Typer(
    help="The whole fabric in network namespaces on this machine (a lab per --workdir).", no_args_is_help=True
)
vm_app = typer.Typer(help="Lab VMs: namespaces a host agent plugs a NIC into.", no_args_is_help=True)
lab_app.add_typer(vm_app, name="vm")
site_app = typer.Typer(
    help="Remote sites: a network behind its own strongSwan, GRE endpoint or provider router.", no_args_is_help=True
)
lab_app.add_typer(site_app, name="site")
WORKDIR = typer.Option(
    Path("var/lab"), "--workdir", envvar="ISTHMUS_LAB", help="The lab's directory: its state file, store and logs."
)


@contextmanager
def lab_errors() -> Iterator[None]:
    """The lab's failures as one-line CLI errors."""
    try:
        yield
    except fabric.LabError as error:
        raise CliError(str(error)) from error


def lab_state(workdir: Path) -> fabric.LabState:
    state = fabric.load_state(workdir)
    if state is None:
        raise CliError(f"{fabric.NoLab(workdir)}: `isthmus lab up --workdir {workdir}` starts one")
    return state


@contextmanager
def operator(state: fabric.LabState) -> Iterator[None]:
    """Lab failures, and the lab's controller not answering, as one-line CLI errors."""
    with lab_errors():
        try:
            yield
        except httpx.HTTPError as error:
            raise CliError(
                f"the lab's controller at {state.controller} does not answer ({error}): "
                f"`isthmus lab status --workdir {state.workdir}`"
            ) from error


@lab_app.command("up")
def up(
    workdir: Path = WORKDIR,
    hosts: int = typer.Option(2, min=1, max=50, help="Host nodes (h1..hN), each with a host agent."),
    muxes: int = typer.Option(1, min=1, max=8, help="SLB MUX nodes, each with a MUX agent and a BGP speaker."),
    gateways: int = typer.Option(3, min=0, max=20, help="Gateway nodes of the pool (N=1 from two on), with agents."),
    prefix: str = typer.Option("isl-", help="Every namespace of the lab starts with this."),
    kernel_nodes: str = typer.Option(
        "", help="Nodes to run as qemu guests on Debian's kernel instead of namespaces, e.g. h2,gw3."
    ),
    controllers: int = typer.Option(
        1, min=1, max=5, help="Controller replicas: from two on they share a PostgreSQL cluster the lab starts."
    ),
) -> None:
    """Build the fabric and start the controller (with a fresh store), the ToR, and the host and MUX agents."""
    topology = Topology(prefix, hosts, muxes, gateways, controllers)
    guests = [name.strip() for name in kernel_nodes.split(",") if name.strip()]
    with lab_errors():
        fabric.check_free(workdir, topology)
        fabric.check_kernel_nodes(topology, guests)
        if controllers > 1:
            print(f"lab up: {controllers} controller replicas on a fresh PostgreSQL cluster (one leads)")
        else:
            print(f"lab up: a fresh store in {workdir / 'isthmus.db'} (any previous lab store there is replaced)")
        if guests:
            print(f"lab up: kernel nodes {', '.join(guests)} boot as qemu guests (~40 s to their agents, in parallel)")
        state = fabric.up(workdir, topology, kernel_nodes=guests)
    print(f"lab up: controller {state.controller} (CA {state.ca}); operator token in {workdir / fabric.STATE_FILE}")
    print(f"lab up: dashboard {state.controller}/ui/ (log in with the operator token)")


@lab_app.command("down")
def down(
    workdir: Path = WORKDIR,
    prefix: str | None = typer.Option(
        None, help="Only without a state file (after a crash): remove the namespaces named PREFIX*."
    ),
) -> None:
    """Stop what the lab in --workdir started; remove its namespaces and state (also after half an `up`)."""
    with lab_errors():
        try:
            removed = fabric.down(workdir, prefix)
        except fabric.NoLab as error:
            raise CliError(
                f"{error}: nothing removed (--prefix P removes namespaces named P* if its state is lost)"
            ) from None
    print(f"lab down: removed {len(removed)} namespaces and processes")


@lab_app.command("status")
def status(ctx: typer.Context, workdir: Path = WORKDIR) -> None:
    """The nodes and their health, and the processes the lab started; fails naming whatever is dead."""
    s = settings(ctx)
    with lab_errors():
        report = fabric.status(workdir)
    if s.output != "table":
        emit(s, report)
    else:
        title = f"lab {report['prefix']} in {workdir}: controller {report['controller']}, dashboard at /ui/"
        show(s, report["nodes"], [
            Column("node", lambda n: n["name"]),
            Column("role", lambda n: n["role"]),
            Column("health", lambda r: health(r["lastSeen"])),
            Column("applied revision", lambda n: n["appliedRevision"], drop=2),
            Column("last seen", lambda n: when(n["lastSeen"]), drop=1),
        ], title)  # fmt: skip
        processes = [{"name": name, **p} for name, p in report["processes"].items()]
        show(s, processes, [
            Column("name", lambda p: p["name"]),
            Column("kind", lambda p: p["kind"], drop=1),
            Column("pid", lambda p: p["pid"]),
            Column("running", lambda p: "yes" if p["running"] else "no"),
        ], f"processes the lab started ({report['namespaces']} namespaces)")  # fmt: skip
    if report["dead"]:
        raise CliError(f"the lab in {workdir} is not whole: dead: {'; '.join(report['dead'])}")


@lab_app.command("mux-routes")
def mux_routes(
    ctx: typer.Context,
    workdir: Path = WORKDIR,
    limit: int = typer.Option(50, min=0, help="Public IPs to list (the title counts every one)."),
) -> None:
    """What each MUX announces and what the ToR learned, side by side.

    Per MUX: its session to the ToR, the desired count its agent reports, what its speaker announces.

    Per public IP: the MUXes that announce it, those the ToR learned it from, the ToR's FIB next hops."""
    s = settings(ctx)
    state = lab_state(workdir)
    with operator(state):
        view = collect(state)
    if s.output != "table":
        emit(s, view.as_json())
        return
    muxes = [
        {"mux": m.name, "address": m.address, "session": "Established" if m.session else "down",
         "desired": m.desired, "speaker": m.speaker,
         "announced": "not answering" if m.announced is None else len(m.announced),
         "learned": sum(1 for peers in view.learned.values() if m.name in peers)}
        for m in view.muxes
    ]  # fmt: skip
    show(s, muxes, [
        Column("mux", _key("mux")),
        Column("address", _key("address"), drop=3),
        Column("session to ToR", _key("session")),
        Column("desired (agent)", _key("desired"), drop=1),
        Column("announced", _key("announced")),
        Column("speaker", _key("speaker"), drop=2),
        Column("ToR learned", _key("learned")),
    ], "MUX announcements")  # fmt: skip
    prefixes = view.prefixes()
    rows = [
        {"prefix": p, "by": [m.name for m in view.muxes if m.announced and p in m.announced] or ["none"],
         "learned": view.learned.get(p), "fib": view.fib.get(p) or ["not installed"]}
        for p in prefixes[:limit]
    ]  # fmt: skip
    show(s, rows, [
        Column("public IP", _key("prefix")),
        Column("announced by", _key("by")),
        Column("ToR learned from", _key("learned"), drop=1),
        Column("ToR FIB next hops", _key("fib")),
    ], f"public IPs ({len(prefixes)}; the ToR's FIB holds {len(view.fib)})")  # fmt: skip
    if len(prefixes) > limit:
        print(f"… {len(prefixes) - limit} more (--limit, or -o json)")


def _key(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row[name]


@vm_app.command("create")
def vm_create(
    name: str = typer.Argument(..., help="The VM's name (also its port binding's)."),
    nic: str = typer.Option(..., help="The NIC to plug in: its id, or its name with --group and --subscription."),
    group: str | None = typer.Option(None, "--group", "-g", help="The NIC's resource group (with a NIC name)."),
    subscription: str | None = typer.Option(
        None, "--subscription", "-s", envvar="ISTHMUS_SUBSCRIPTION", help="The NIC's subscription (with a name)."
    ),
    host: str = typer.Option("h1", help="The host node it runs on."),
    workdir: Path = WORKDIR,
) -> None:
    """Bind a NIC to a host: its host agent creates the VM's namespace and plugs the NIC in.

    An existing VM is refused (delete it first) unless it has the same NIC on the same host: then nothing changes."""
    if not nic.startswith("/"):
        if not group or not subscription:
            raise CliError(f"--nic {nic} is a name: give its --group and --subscription too, or the NIC's full id")
        nic = str(ResourceId(subscription, group, "networkInterfaces", nic))
    state = lab_state(workdir)
    with operator(state):
        existed = vms.binding(state, name) is not None
        vm = vms.create(state, name, nic, host)
    already = " (it existed: unchanged)" if existed else ""
    print(f"VM {vm.name} on {vm.host}: {', '.join(vm.addresses)} (netns {vm.netns}){already}")


@vm_app.command("delete")
def vm_delete(name: str = typer.Argument(..., help="The VM's name."), workdir: Path = WORKDIR) -> None:
    """Unbind the VM's NIC and wait until the host agent has removed the VM."""
    state = lab_state(workdir)
    with operator(state):
        vms.delete(state, name)
    print(f"VM {name} deleted")


@vm_app.command("list")
def vm_list(ctx: typer.Context, workdir: Path = WORKDIR) -> None:
    """The lab's VMs: their host, addresses and namespace (none yet: not plugged)."""
    state = lab_state(workdir)
    with operator(state):
        rows = [vm.__dict__ | {"addresses": list(vm.addresses), "netns": vm.netns or None} for vm in vms.listing(state)]
    show(settings(ctx), rows, [
        Column("name", _key("name")),
        Column("host", _key("host")),
        Column("addresses", _key("addresses")),
        Column("netns", _key("netns"), drop=2),
        Column("nic", _key("nic"), drop=1),
    ], "lab VMs")  # fmt: skip


@vm_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def vm_exec(
    ctx: typer.Context, name: str = typer.Argument(..., help="The VM's name."), workdir: Path = WORKDIR
) -> None:
    """Run a command in the VM: `isthmus lab vm exec vm1 -- ping -c1 198.51.100.10` (default: a shell)."""
    state = lab_state(workdir)
    vm = vms.find(state, name)
    if vm is None:
        raise CliError(f"no VM {name} in the lab at {workdir} (`isthmus lab vm list`)")
    if vm.host in state.kernel_nodes:  # inside a guest: no terminal, so one command, its output, its exit code
        if not ctx.args:
            raise CliError(f"VM {name} is on kernel node {vm.host}: give a command (`-- ip -br addr`), no shell")
        with lab_errors():
            code, output = vms.run(state, vm, ctx.args)
        print(output, end="")
        raise typer.Exit(code)
    command = ctx.args or ["sh"]
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{vm.netns}", *command])


@site_app.command("create")
def site_create(
    name: str = typer.Argument(..., help="The site's name (up to 8 letters and digits)."),
    address: str = typer.Option(..., help="Its public address (198.51.100.X), or for --l3-link its link address."),
    prefix: str = typer.Option(..., help="Its on-premises network, e.g. 192.0.2.0/26 (a host at .10)."),
    swanctl: Path | None = typer.Option(None, exists=True, dir_okay=False, help="IPsec: the swanctl.conf to load."),
    gre_remote: str | None = typer.Option(None, help="GRE: the gateway's public IP, the tunnel's other end."),
    key: int | None = typer.Option(None, help="GRE: the tunnel's key."),
    checksum: bool = typer.Option(False, help="GRE: checksum every packet and require it."),
    tunnel_address: str | None = typer.Option(None, help="GRE: the site's inner address, e.g. 198.19.0.2/30."),
    l3_link: str | None = typer.Option(None, help="L3: a provider router, its link address, e.g. 198.19.1.2/30."),
    next_hop: str | None = typer.Option(None, help="L3: the gateway's address on the link."),
    route: list[str] = typer.Option([], help="GRE, L3: a prefix routed to the gateway (the VNet's); repeatable."),
    bgp_asn: int | None = typer.Option(None, help="BGP: the site's ASN (FRR bgpd at the site)."),
    bgp_peer: str | None = typer.Option(
        None, help="BGP: the gateway's address (GRE tunnel, L3 link, or its bgpPeeringAddress behind an IPsec tunnel)."
    ),
    bgp_peer_asn: int = typer.Option(65515, help="BGP: the virtual network gateway's ASN."),
    advertise: list[str] = typer.Option([], help="BGP: a prefix the site advertises besides --prefix; repeatable."),
    workdir: Path = WORKDIR,
) -> None:
    """A site with a host behind it: on the internet segment with strongSwan configured from your swanctl.conf
    (`isthmus` can write one: POST …/connections/NAME/vpndeviceconfigurationscript) or a GRE endpoint (scapy's,
    independent of the gateway's datapath); or a provider router (FRR) on the provider segment, for L3. With
    --bgp-asn and --bgp-peer the site speaks BGP with the gateway (FRR bgpd), advertising --prefix and --advertise."""
    state = lab_state(workdir)
    with lab_errors():
        gre = GreEnd(gre_remote, key, checksum, tunnel_address, tuple(route)) if gre_remote else None
        if l3_link and not next_hop:
            raise fabric.LabError("--l3-link needs --next-hop (the gateway's address on the link)")
        l3 = sites.L3End(l3_link, next_hop, tuple(route)) if l3_link and next_hop else None
        if (bgp_asn is None) != (bgp_peer is None):
            raise fabric.LabError("BGP needs both --bgp-asn (the site's) and --bgp-peer (the gateway's address)")
        bgp = sites.SiteBgp(bgp_asn, bgp_peer, bgp_peer_asn, tuple(advertise)) if bgp_asn and bgp_peer else None
        site = sites.create(state, name, address, prefix, swanctl.read_text() if swanctl else None, gre=gre, l3=l3,
                            bgp=bgp)  # fmt: skip
    print(f"site {site.name}: {site.address}, {site.prefix} with host {site.host_address} (netns {site.netns})")


@site_app.command("list")
def site_list(ctx: typer.Context, workdir: Path = WORKDIR) -> None:
    """The lab's sites, and what an IPsec site's charon says of its SAs."""
    state = lab_state(workdir)
    rows = [{**site.__dict__, "kind": sites.kind(site),
             "sas": sites.swanctl(site, "--list-sas").count("ESTABLISHED") if sites.kind(site) == "ipsec" else "-"}
            for site in sites.listing(state)]  # fmt: skip
    show(settings(ctx), rows, [
        Column("name", _key("name")),
        Column("kind", _key("kind")),
        Column("address", _key("address")),
        Column("prefix", _key("prefix")),
        Column("host", _key("host_address")),
        Column("IKE SAs up", _key("sas"), drop=1),
        Column("netns", _key("netns"), drop=2),
    ], "lab sites")  # fmt: skip


@site_app.command("delete")
def site_delete(name: str = typer.Argument(..., help="The site's name."), workdir: Path = WORKDIR) -> None:
    """Stop the site's charon and remove its namespaces."""
    state = lab_state(workdir)
    with lab_errors():
        sites.delete(state, name)
    print(f"site {name} deleted")
