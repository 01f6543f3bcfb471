"""`isthmus`: the controller, its tokens and PKI, the lab, and commands for tenants and operators.

`run` is the entry point: global options may come before or after the subcommand (`isthmus placement -o
json`), and a failure is one line on stderr (`--debug` shows the traceback).
"""

from __future__ import annotations

import sys

import typer

from isthmus import __version__
from isthmus.cli import agent, groups, lab, mux, operator, resources, server
from isthmus.cli.client import OUTPUTS, Settings
from isthmus.cli.entry import run_app

app = typer.Typer(
    help="isthmus: tenant networks to the outside world.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Global options that may also follow the subcommand: name -> takes a value. Not --controller, --ca or
# --token: the agent commands have options of those names.
GLOBAL_OPTIONS = {"--output": True, "-o": True, "--wide": False, "--ids": False, "--debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"isthmus {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    controller_url: str = typer.Option(
        "https://127.0.0.1:8443", "--controller", envvar="ISTHMUS_CONTROLLER", help="The controller's URL."
    ),
    token: str | None = typer.Option(None, envvar="ISTHMUS_TOKEN", help="Bearer token."),
    ca: str | None = typer.Option(None, envvar="ISTHMUS_CA", help="CA certificate of the controller."),
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
    wide: bool = typer.Option(False, "--wide", help="Every column of a table, however wide."),
    full_ids: bool = typer.Option(False, "--ids", help="Full resource ids in tables, not names."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of a failure."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if output not in OUTPUTS:
        raise typer.BadParameter(f"--output is one of {', '.join(OUTPUTS)}, not {output!r}")
    ctx.obj = Settings(controller_url, token, ca, output, wide, full_ids)


app.command("controller")(server.controller)
app.add_typer(server.token_app, name="token")
app.add_typer(server.pki_app, name="pki")
app.add_typer(server.db_app, name="db")
app.add_typer(groups.group_app, name="group")
app.add_typer(resources.vnet_app, name="vnet")
app.add_typer(resources.subnet_app, name="subnet")
app.add_typer(resources.nic_app, name="nic")
app.add_typer(resources.nsg_app, name="nsg")
app.add_typer(resources.publicip_app, name="publicip")
app.add_typer(resources.vnet_gateway_app, name="vnet-gateway")
app.add_typer(resources.local_gateway_app, name="local-gateway")
app.add_typer(resources.connection_app, name="connection")
app.add_typer(operator.pool_app, name="pool")
app.add_typer(operator.gateway_app, name="gateway")
app.add_typer(operator.host_app, name="host")
app.add_typer(operator.publicip_pool_app, name="publicip-pool")
app.add_typer(operator.port_binding_app, name="port-binding")
app.add_typer(operator.node_app, name="node")
app.add_typer(lab.lab_app, name="lab")
app.add_typer(mux.mux_app, name="mux")
operator.add_mux_commands(mux.mux_app)
app.command("placement")(operator.placement)
app.command("events")(operator.events)


@app.command("agent", add_help_option=False,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})  # fmt: skip
def agent_command(ctx: typer.Context) -> None:
    """Node agents: level-triggered reconcilers (host, mux, gateway: `isthmus agent --help`)."""
    agent.main(list(ctx.args))


def hoisted(args: list[str]) -> list[str]:
    """`args` with the global options moved before the subcommand (up to a `--`, which ends options)."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name, eq, _value = arg.partition("=")
        if name in GLOBAL_OPTIONS and (eq or not GLOBAL_OPTIONS[name]):
            front.append(arg)
        elif name in GLOBAL_OPTIONS and index + 1 < len(args):
            front += [arg, args[index + 1]]
            index += 1
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append(arg)  # -ojson
        else:
            rest.append(arg)
        index += 1
    return front + rest


def run(argv: list[str] | None = None) -> None:
    run_app(app, hoisted(list(sys.argv[1:] if argv is None else argv)), "isthmus")
