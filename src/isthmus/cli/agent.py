"""`isthmus agent host|mux|gateway`: run a node's agent against the controller."""

from __future__ import annotations

import logging
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from isthmus.linux.speaker import DEFAULT_SPEAKER

if TYPE_CHECKING:
    from isthmus.agents.loop import Reconciler


class SpeakerKind(StrEnum):
    bird = "bird"
    gobgp = "gobgp"


DEFAULT = SpeakerKind(DEFAULT_SPEAKER)


agent_app = typer.Typer(help="Node agents: level-triggered reconcilers.", no_args_is_help=True)


def _logging(role: str, node: str, log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s {role} {node} %(levelname)s %(message)s")


def _start(role: str, node: str, controller: str, token_file: Path, ca: str | None, address: str | None,
           reconciler: Reconciler, log_level: str, capabilities: dict[str, Any] | None = None,
           metrics: str | None = None) -> None:  # fmt: skip
    """Run the agent; `capabilities`: probed already (by a command whose reconciler needed them)."""
    from isthmus.agents.client import ControllerClient  # the agents' imports, only for the agent commands
    from isthmus.agents.loop import run
    from isthmus.linux.datapath import probe_for_registration

    _logging(role, node, log_level)
    client = ControllerClient(controller, token_file.read_text().strip(), ca, node, role)
    run(client, reconciler, address, threading.Event(), capabilities or probe_for_registration(), metrics)


@agent_app.command("host")
def host(
    node: str = typer.Option(..., help="This node's name."),
    controller: str = typer.Option(..., envvar="ISTHMUS_CONTROLLER"),
    token_file: Path = typer.Option(..., help="File holding this node's token."),
    ca: str | None = typer.Option(None, envvar="ISTHMUS_CA"),
    address: str | None = typer.Option(None, help="Underlay address to register."),
    netns_prefix: str = typer.Option("isthmus-", help="Prefix of the namespaces this agent creates."),
    metrics: str | None = typer.Option(None, help="HOST:PORT to serve this agent's Prometheus metrics on."),
    log_level: str = typer.Option("info"),
) -> None:
    """A compute host: VNet routers, VM ports, NSGs, public IPs, outbound NAT."""
    from isthmus.agents.host import HostReconciler

    _start("host", node, controller, token_file, ca, address, HostReconciler(node, netns_prefix), log_level,
           metrics=metrics)  # fmt: skip


@agent_app.command("mux")
def mux(
    node: str = typer.Option(..., help="This node's name."),
    controller: str = typer.Option(..., envvar="ISTHMUS_CONTROLLER"),
    token_file: Path = typer.Option(..., help="File holding this node's token."),
    ca: str | None = typer.Option(None, envvar="ISTHMUS_CA"),
    address: str | None = typer.Option(None, help="Underlay address to register."),
    run_dir: Path | None = typer.Option(None, help="The speaker's socket, config and log (default /run/isthmus/NODE)."),
    speaker: SpeakerKind = typer.Option(DEFAULT, envvar="ISTHMUS_MUX_SPEAKER", help="The BGP speaker it runs."),
    metrics: str | None = typer.Option(None, help="HOST:PORT to serve this agent's Prometheus metrics on."),
    log_level: str = typer.Option("info"),
) -> None:
    """An SLB MUX: every public IP announced over BGP (BIRD or gobgpd) and routed to its backend."""
    from isthmus.agents.lease import LeaseClient
    from isthmus.agents.mux import MuxReconciler
    from isthmus.agents.witness import ControllerContact, WitnessServer

    reconciler = MuxReconciler(node, run_dir or Path("/run/isthmus") / node, speaker.value)
    if address:  # a witness for the gateways (agents/witness.py): it holds a lease to know the controller lives
        contact = ControllerContact(LeaseClient(controller, token_file.read_text().strip(), ca, node))
        threading.Thread(target=contact.run, args=(threading.Event(),), name="lease", daemon=True).start()
        WitnessServer(node, address, contact, reconciler.routes_via)
    _start("mux", node, controller, token_file, ca, address, reconciler, log_level, metrics=metrics)


@agent_app.command("gateway")
def gateway(
    node: str = typer.Option(..., help="This node's name."),
    controller: str = typer.Option(..., envvar="ISTHMUS_CONTROLLER"),
    token_file: Path = typer.Option(..., help="File holding this node's token."),
    ca: str | None = typer.Option(None, envvar="ISTHMUS_CA"),
    address: str | None = typer.Option(None, help="Underlay address to register."),
    netns_prefix: str = typer.Option("isthmus-", help="Prefix of the compartment namespaces this agent creates."),
    run_dir: Path | None = typer.Option(None, help="The compartments' charons (default /run/isthmus/NODE)."),
    provider_device: str | None = typer.Option(None, help="The interface on the provider network (L3 connections)."),
    metrics: str | None = typer.Option(None, help="HOST:PORT to serve this agent's Prometheus metrics on."),
    log_level: str = typer.Option("info"),
) -> None:
    """A gateway node of a pool: one compartment per virtual network gateway it carries (IKEv2 by charon, GRE)."""
    from isthmus.agents import watchdog
    from isthmus.agents.gateway import GatewayReconciler, compartment_prefix
    from isthmus.linux.datapath import probe_for_registration
    from isthmus.linux.supervisor import Daemon

    _logging("gateway", node, log_level)
    capabilities = probe_for_registration()
    datapath = (capabilities or {}).get("datapath", {})
    run_root = run_dir or Path("/run/isthmus") / node
    prefix = compartment_prefix(netns_prefix, node)
    # The lease holder and fence, a process of its own: it outlives this agent (agents/watchdog.py).
    guard = Daemon("watchdog", watchdog.command(node, controller, token_file, ca, run_root, prefix, address,
                                                provider_device), run_root,
                   probe=lambda: (run_root / watchdog.LEASE_FILE).exists(), stop_timeout=2.0)  # fmt: skip
    reconciler = GatewayReconciler(node, netns_prefix, run_root, libipsec=datapath.get("ipsec") != "xfrm",
                                   kernel_gre=datapath.get("gre") == "ip_gre", vlan=datapath.get("vlan") == "8021q",
                                   provider_device=provider_device, watchdog=guard)  # fmt: skip
    _start("gateway", node, controller, token_file, ca, address, reconciler, log_level, capabilities, metrics)
