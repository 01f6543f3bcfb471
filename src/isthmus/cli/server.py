"""Commands run on the controller's machine: the controller itself, tokens, PKI, the schema."""

from __future__ import annotations

import logging
from ipaddress import ip_network
from pathlib import Path

import typer

from isthmus import pki
from isthmus.api import listener
from isthmus.api.app import create_app
from isthmus.linux.sockets import listen_here, listen_in_netns
from isthmus.model.snapshot import FabricSettings
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade

DEFAULT_DB = "sqlite:///var/isthmus.db"
PROBE_SOURCES = tuple(str(network) for network in FabricSettings().azure_load_balancer)

token_app = typer.Typer(help="Bearer tokens for tenants, operators and nodes.", no_args_is_help=True)
pki_app = typer.Typer(help="The controller's CA and server certificate.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)


def _sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def controller(
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB", help="sqlite:///PATH or postgresql://…"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8443, help="TCP port."),
    tls_dir: Path | None = typer.Option(None, help="Directory from `isthmus pki init` (serves HTTPS)."),
    log_level: str = typer.Option("warning"),
    listen_netns: list[str] = typer.Option(
        [], help="Also listen in a network namespace: NETNS:ADDRESS:PORT (repeat). The lab's management network."
    ),
    azure_load_balancer: list[str] = typer.Option(
        list(PROBE_SOURCES),
        help="Where the platform's health probes come from: the NSG service tag AzureLoadBalancer (repeat).",
    ),
) -> None:
    """Run the controller: tenant API, operator API and agent protocol."""
    try:
        settings = FabricSettings(tuple(ip_network(p) for p in azure_load_balancer))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--azure-load-balancer") from None
    _sqlite_dir(db)
    engine = make_engine(db)
    upgrade(engine)
    logging.basicConfig(level=log_level.upper())
    tls = None if tls_dir is None else (str(tls_dir / pki.SERVER_CERT), str(tls_dir / pki.SERVER_KEY))
    sockets = [listen_here(host, port)]
    for spec in listen_netns:
        netns, _, rest = spec.partition(":")
        address, _, listen_port = rest.rpartition(":")
        if not netns or not address or not listen_port.isdigit():
            raise typer.BadParameter(f"--listen-netns wants NETNS:ADDRESS:PORT, not {spec!r}")
        sockets.append(listen_in_netns(netns, address, int(listen_port)))
    listener.serve(create_app(engine, settings=settings), sockets, log_level=log_level, tls=tls)


@token_app.command("create")
def token_create(
    subscription: str | None = typer.Option(None, help="A tenant token for this subscription id."),
    operator: bool = typer.Option(False, "--operator", help="An operator token."),
    node: str | None = typer.Option(None, help="A token for this agent node."),
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB"),
) -> None:
    """Create a token and print its secret (shown only this once)."""
    chosen = [
        (k, v)
        for k, v in (
            ("subscription", subscription),
            ("operator", "operator" if operator else None),
            ("node", node),
        )
        if v
    ]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --subscription, --operator, --node")
    _sqlite_dir(db)
    engine = make_engine(db)
    upgrade(engine)
    kind, subject = chosen[0]
    try:
        print(tokens.create(engine, kind, subject))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., help="The token's id: ism_<id>_… of the secret."),
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB"),
) -> None:
    """Revoke a token (controllers stop accepting it within 5 s)."""
    if not tokens.revoke(make_engine(db), token_id):
        raise typer.BadParameter(f"no token with id {token_id}")
    print(f"revoked {token_id}")


@pki_app.command("init")
def pki_init(
    directory: Path = typer.Option(Path("var/pki"), "--dir", help="Where the CA and certificate go."),
    name: list[str] = typer.Option(list(pki.DEFAULT_NAMES), help="Server names and addresses (repeat)."),
) -> None:
    """Create a CA (kept if present) and a fresh server certificate."""
    ca = pki.init(directory, tuple(name))
    print(ca)


@db_app.command("upgrade")
def db_upgrade(db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB")) -> None:
    """Apply the store's migrations."""
    _sqlite_dir(db)
    upgrade(make_engine(db))
