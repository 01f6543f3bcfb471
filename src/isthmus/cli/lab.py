"""`isthmus lab`: build, inspect and remove the namespace fabric; create VMs and run commands in them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from isthmus.lab import fabric, vms
from isthmus.lab.topology import Topology

lab_app = typer.Typer(help="The whole fabric in network namespaces on this machine.", no_args_is_help=True)
vm_app = typer.Typer(help="Lab VMs: namespaces plugged into a NIC.", no_args_is_help=True)
lab_app.add_typer(vm_app, name="vm")
console = Console()
WORKDIR = typer.Option(Path("var/lab"), "--workdir", envvar="ISTHMUS_LAB", help="Where the lab keeps its state.")


def lab_state(workdir: Path) -> fabric.LabState:
    state = fabric.load_state(workdir)
    if state is None:
        console.print(f"[red]no lab is up[/red] (no {workdir / fabric.STATE_FILE}): run `isthmus lab up`")
        raise typer.Exit(1)
    return state


@lab_app.command("up")
def up(
    workdir: Path = WORKDIR,
    hosts: int = typer.Option(2, min=1, max=50),
    muxes: int = typer.Option(1, min=1, max=8),
    gateways: int = typer.Option(3, min=0, max=20),
    prefix: str = typer.Option("isl-", help="Every namespace of the lab starts with this."),
) -> None:
    """Build the fabric and start the controller, the ToR, and the host and MUX agents."""
    try:
        state = fabric.up(workdir, Topology(prefix, hosts, muxes, gateways))
    except fabric.LabError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"lab up: controller {state.controller} (CA {state.ca}); operator token in {workdir}/lab.json")


@lab_app.command("down")
def down(workdir: Path = WORKDIR, prefix: str | None = typer.Option(None, help="Default: the running lab's.")) -> None:
    """Remove everything the lab created (also after a crash or a half-finished `up`)."""
    if prefix is None and fabric.load_state(workdir) is None:
        prefix = "isl-"
    removed = fabric.down(workdir, prefix)
    console.print(f"lab down: removed {len(removed)} namespaces and processes")


@lab_app.command("status")
def status(workdir: Path = WORKDIR, output: str = typer.Option("table", "--output", "-o")) -> None:
    """Nodes, agents and their health."""
    report = fabric.status(workdir)
    if output == "json":
        print(json.dumps(report, indent=2))
        return
    if not report["up"]:
        console.print("no lab is up")
        raise typer.Exit(1)
    table = Table(
        title=f"lab {report['prefix']} — controller {report['controller']}, {report['namespaces']} namespaces"
    )
    for column in ("node", "role", "live", "applied revision", "last seen"):
        table.add_column(column)
    for node in report["nodes"]:
        table.add_row(node.get("name", "?"), node.get("role", "?"), str(node.get("live")),
                      str(node.get("appliedRevision")), str(node.get("lastSeen")))  # fmt: skip
    console.print(table)
    processes = Table(title="processes the lab started")
    for column in ("name", "pid", "running"):
        processes.add_column(column)
    for name, info in report["processes"].items():
        processes.add_row(name, str(info["pid"]), "yes" if info["running"] else "[red]no[/red]")
    console.print(processes)


@vm_app.command("create")
def vm_create(
    name: str = typer.Argument(..., help="The VM's name (also the port binding's)."),
    nic: str = typer.Option(..., help="The networkInterfaces id to plug in."),
    host: str = typer.Option("h1", help="The host node it runs on."),
    workdir: Path = WORKDIR,
) -> None:
    """Bind a NIC to a host; the host agent creates the VM's namespace and plugs the NIC."""
    try:
        vm = vms.create(lab_state(workdir), name, nic, host)
    except fabric.LabError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"VM {vm.name} on {vm.host}: {', '.join(vm.addresses)} (netns {vm.netns})")


@vm_app.command("delete")
def vm_delete(name: str, workdir: Path = WORKDIR) -> None:
    """Unbind the VM's NIC; the host agent removes the VM."""
    try:
        vms.delete(lab_state(workdir), name)
    except fabric.LabError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None


@vm_app.command("list")
def vm_list(workdir: Path = WORKDIR, output: str = typer.Option("table", "--output", "-o")) -> None:
    rows = vms.listing(lab_state(workdir))
    if output == "json":
        print(json.dumps([vm.__dict__ for vm in rows], indent=2, default=list))
        return
    table = Table(title="lab VMs")
    for column in ("name", "host", "addresses", "netns", "nic"):
        table.add_column(column)
    for vm in rows:
        table.add_row(vm.name, vm.host, ", ".join(vm.addresses) or "-", vm.netns or "-", vm.nic)
    console.print(table)


@vm_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def vm_exec(ctx: typer.Context, name: str, workdir: Path = WORKDIR) -> None:
    """Run a command in the VM: `isthmus lab vm exec vm1 -- ping -c1 198.51.100.10`."""
    vm = vms.find(lab_state(workdir), name)
    if vm is None:
        console.print(f"[red]no VM {name}[/red]")
        raise typer.Exit(1)
    command = ctx.args or ["sh"]
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{vm.netns}", *command])
