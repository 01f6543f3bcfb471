"""`isthmus`: the controller, its tokens and PKI, and read commands for tenants and operators."""

from __future__ import annotations

import typer

from isthmus.cli import agent, lab, mux, server, show
from isthmus.cli.client import Settings

app = typer.Typer(help="isthmus: tenant networks to the outside world.", no_args_is_help=True)


@app.callback()
def main(
    ctx: typer.Context,
    controller_url: str = typer.Option("https://127.0.0.1:8443", "--controller", envvar="ISTHMUS_CONTROLLER"),
    token: str | None = typer.Option(None, envvar="ISTHMUS_TOKEN", help="Bearer token."),
    ca: str | None = typer.Option(None, envvar="ISTHMUS_CA", help="CA certificate of the controller."),
    output: str = typer.Option("table", "--output", "-o", help="table or json"),
) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("--output is table or json")
    ctx.obj = Settings(controller_url, token, ca, output)


app.command("controller")(server.controller)
app.add_typer(server.token_app, name="token")
app.add_typer(server.pki_app, name="pki")
app.add_typer(server.db_app, name="db")
app.add_typer(show.vnet_app, name="vnet")
app.add_typer(show.publicip_app, name="publicip")
app.add_typer(show.nsg_app, name="nsg")
app.add_typer(show.pool_app, name="pool")
app.add_typer(show.gateway_app, name="gateway")
app.add_typer(show.node_app, name="node")
app.add_typer(agent.agent_app, name="agent")
app.add_typer(lab.lab_app, name="lab")
app.add_typer(mux.mux_app, name="mux")
app.command("placement")(show.placement)
app.command("events")(show.events)
