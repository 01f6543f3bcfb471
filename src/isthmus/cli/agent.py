"""`isthmus agent host|mux|gateway`: run a node's agent against the controller.

argparse, not typer as the rest of the CLI: an agent also starts in a qemu guest under software emulation,
where typer's imports and the pydantic adapter it builds for every option cost ~2 s before the agent could
register. `python -m isthmus agent …` (no other CLI module imported) and `isthmus agent …` (cli/main.py)
both end in `main`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isthmus.cli.entry import fail
from isthmus.linux.speaker import DEFAULT_SPEAKER, SPEAKERS

if TYPE_CHECKING:
    from isthmus.agents.loop import Reconciler

DESCRIPTION = "Node agents: level-triggered reconcilers."


def _logging(role: str, node: str, log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s {role} {node} %(levelname)s %(message)s")


def _start(role: str, options: argparse.Namespace, reconciler: Reconciler,
           capabilities: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Run the agent; `capabilities`: probed already (by a command whose reconciler needed them)."""
    from isthmus.agents.client import ControllerClient  # the agents' imports, only for the agent commands
    from isthmus.agents.loop import run
    from isthmus.linux.datapath import probe_for_registration

    _logging(role, options.node, options.log_level)
    client = ControllerClient(options.controller, _token(options), options.ca, options.node, role)
    run(client, reconciler, options.address, threading.Event(), capabilities or probe_for_registration(),
        options.metrics)  # fmt: skip


def _token(options: argparse.Namespace) -> str:
    return str(Path(options.token_file).read_text().strip())


def host(options: argparse.Namespace) -> None:
    from isthmus.agents.host import HostReconciler

    _start("host", options, HostReconciler(options.node, options.netns_prefix))


def mux(options: argparse.Namespace) -> None:
    from isthmus.agents.lease import LeaseClient
    from isthmus.agents.mux import MuxReconciler
    from isthmus.agents.witness import ControllerContact, WitnessServer

    node = options.node
    reconciler = MuxReconciler(node, options.run_dir or Path("/run/isthmus") / node, options.speaker)
    if options.address:  # a witness for the gateways (agents/witness.py): it holds a lease to know the controller lives
        contact = ControllerContact(LeaseClient(options.controller, _token(options), options.ca, node))
        threading.Thread(target=contact.run, args=(threading.Event(),), name="lease", daemon=True).start()
        WitnessServer(node, options.address, contact, reconciler.routes_via)
    _start("mux", options, reconciler)


def gateway(options: argparse.Namespace) -> None:
    from isthmus.agents import watchdog
    from isthmus.agents.gateway import GatewayReconciler, compartment_prefix
    from isthmus.linux.datapath import probe_for_registration
    from isthmus.linux.supervisor import Daemon

    node = options.node
    _logging("gateway", node, options.log_level)
    capabilities = probe_for_registration()
    datapath = (capabilities or {}).get("datapath", {})
    run_root = options.run_dir or Path("/run/isthmus") / node
    prefix = compartment_prefix(options.netns_prefix, node)
    # The lease holder and fence, a process of its own: it outlives this agent (agents/watchdog.py).
    guard = Daemon("watchdog", watchdog.command(node, options.controller, options.token_file, options.ca, run_root,
                                                prefix, options.address, options.provider_device), run_root,
                   probe=lambda: (run_root / watchdog.LEASE_FILE).exists(), stop_timeout=2.0)  # fmt: skip
    reconciler = GatewayReconciler(node, options.netns_prefix, run_root, libipsec=datapath.get("ipsec") != "xfrm",
                                   kernel_gre=datapath.get("gre") == "ip_gre", vlan=datapath.get("vlan") == "8021q",
                                   provider_device=options.provider_device, watchdog=guard)  # fmt: skip
    _start("gateway", options, reconciler, capabilities)


def _with_env(parser: argparse.ArgumentParser, flag: str, variable: str, *, required: bool, help: str) -> None:
    """An option whose default is environment variable `variable` (required: given one way or the other)."""
    default = os.environ.get(variable)
    parser.add_argument(flag, default=default, required=required and default is None, help=f"{help} (${variable})")


def _command(commands: Any, role: str, description: str, netns: str | None) -> argparse.ArgumentParser:
    """A role's subcommand with the options every agent has (`netns`: what --netns-prefix names, if any)."""
    parser: argparse.ArgumentParser = commands.add_parser(role, help=description, description=description)
    parser.add_argument("--node", required=True, help="This node's name.")
    _with_env(parser, "--controller", "ISTHMUS_CONTROLLER", required=True, help="The controller's URL(s).")
    parser.add_argument("--token-file", required=True, type=Path, help="File holding this node's token.")
    _with_env(parser, "--ca", "ISTHMUS_CA", required=False, help="CA certificate of the controller.")
    parser.add_argument("--address", help="Underlay address to register.")
    if netns is not None:
        parser.add_argument("--netns-prefix", default="isthmus-", help=f"Prefix of the {netns} this agent creates.")
    parser.add_argument("--metrics", help="HOST:PORT to serve this agent's Prometheus metrics on.")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(run={"host": host, "mux": mux, "gateway": gateway}[role])
    return parser


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="isthmus agent", description=DESCRIPTION)
    commands = top.add_subparsers(title="commands", metavar="{host,mux,gateway}", required=True)
    _command(commands, "host", "A compute host: VNet routers, VM ports, NSGs, public IPs, outbound NAT.", "namespaces")
    speaker = _command(commands, "mux", "An SLB MUX: every public IP announced over BGP (BIRD or gobgpd) and routed to "
                       "its backend.", None)  # fmt: skip
    speaker.add_argument("--run-dir", type=Path, help="The speaker's socket, config, log (default /run/isthmus/NODE).")
    speaker.add_argument("--speaker", choices=SPEAKERS, default=os.environ.get("ISTHMUS_MUX_SPEAKER", DEFAULT_SPEAKER),
                         help="The BGP speaker it runs ($ISTHMUS_MUX_SPEAKER).")  # fmt: skip
    gate = _command(commands, "gateway", "A gateway node of a pool: one compartment per virtual network gateway it "
                    "carries (IKEv2 by charon, GRE).", "compartment namespaces")  # fmt: skip
    gate.add_argument("--run-dir", type=Path, help="The compartments' charons (default /run/isthmus/NODE).")
    gate.add_argument("--provider-device", help="The interface on the provider network (L3 connections).")
    return top


def main(args: list[str]) -> None:
    """Parse `args` (what follows `agent`) and run that agent until it is stopped; a failure is one line on
    stderr, as the rest of the CLI's."""
    if not args:
        parser().print_help()
        sys.exit(2)
    options = parser().parse_args(args)
    try:
        options.run(options)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        fail(f"{type(error).__name__}: {error}", debug=False)
