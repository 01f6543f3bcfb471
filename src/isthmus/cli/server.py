"""Commands run on the controller's machine: the controller itself, tokens, PKI, the schema."""

from __future__ import annotations

import logging
import re
from ipaddress import ip_network
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from isthmus import pki, sealing
from isthmus.api import listener
from isthmus.api.app import create_app
from isthmus.api.arm.service import normal_location
from isthmus.linux.sockets import listen_here, listen_in_netns
from isthmus.model.snapshot import FabricSettings
from isthmus.store import sealed, tokens
from isthmus.store.db import make_engine, upgrade

DEFAULT_DB = "sqlite:///var/isthmus.db"
LOCATION_NAME = re.compile(r"[a-z0-9-]{1,64}")
DEFAULT_PKI = Path("var/pki")
PROBE_SOURCES = tuple(str(network) for network in FabricSettings().azure_load_balancer)

token_app = typer.Typer(help="Bearer tokens for tenants, operators and nodes.", no_args_is_help=True)
pki_app = typer.Typer(help="The controller's CA and server certificate.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)


def _sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _secrets_key(engine: Engine, path: Path) -> Path:
    """`path`, made now if absent, unless the store holds secrets sealed under a key that must be there."""
    if not path.exists():
        if sealed.holds_sealed(engine):
            raise typer.BadParameter(f"{path} is missing and the store holds pre-shared keys sealed under it")
        sealing.write_key(path)
        logging.getLogger("isthmus").warning("made a new secrets key in %s", path)
    return path


def controller(
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB", help="sqlite:///PATH or postgresql://…"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8443, help="TCP port."),
    tls_dir: Path | None = typer.Option(None, help="Directory from `isthmus pki init` (serves HTTPS)."),
    secrets_key: Path | None = typer.Option(
        None, help=f"The key sealing pre-shared keys [default: TLS_DIR/{pki.SECRETS_KEY}, or {DEFAULT_PKI}/…]"
    ),
    log_level: str = typer.Option("warning"),
    listen_netns: list[str] = typer.Option(
        [], help="Also listen in a network namespace: NETNS:ADDRESS:PORT (repeat). The lab's management network."
    ),
    azure_load_balancer: list[str] = typer.Option(
        list(PROBE_SOURCES),
        help="Where the platform's health probes come from: the NSG service tag AzureLoadBalancer (repeat).",
    ),
    location: list[str] = typer.Option(
        list(FabricSettings.locations), help="A location name tenants may create resources in (repeat)."
    ),
) -> None:
    """Run the controller: tenant API, operator API and agent protocol."""
    locations = tuple(normal_location(name) for name in location)
    if not locations or not all(LOCATION_NAME.fullmatch(name) for name in locations):
        raise typer.BadParameter("location names are letters, digits and '-', 1 to 64", param_hint="--location")
    try:
        settings = FabricSettings(tuple(ip_network(p) for p in azure_load_balancer), locations)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--azure-load-balancer") from None
    _sqlite_dir(db)
    engine = make_engine(db)
    upgrade(engine)
    logging.basicConfig(level=log_level.upper())
    key = _secrets_key(engine, secrets_key or (tls_dir or DEFAULT_PKI) / pki.SECRETS_KEY)
    tls = None if tls_dir is None else (str(tls_dir / pki.SERVER_CERT), str(tls_dir / pki.SERVER_KEY))
    sockets = [listen_here(host, port)]
    for spec in listen_netns:
        netns, _, rest = spec.partition(":")
        address, _, listen_port = rest.rpartition(":")
        if not netns or not address or not listen_port.isdigit():
            raise typer.BadParameter(f"--listen-netns wants NETNS:ADDRESS:PORT, not {spec!r}")
        sockets.append(listen_in_netns(netns, address, int(listen_port)))
    try:
        app = create_app(engine, settings=settings, secrets_key=key)
    except sealing.SealError as error:
        raise typer.BadParameter(str(error), param_hint="--secrets-key") from None
    listener.serve(app, sockets, log_level=log_level, tls=tls)


@token_app.command("create")
def token_create(
    subscription: str | None = typer.Option(None, help="A tenant token for this subscription id."),
    operator: bool = typer.Option(False, "--operator", help="An operator token (/admin only)."),
    all_subscriptions: bool = typer.Option(
        False, "--all-subscriptions", help="With --operator: the token also reads and writes every subscription."
    ),
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
    if all_subscriptions and not operator:
        raise typer.BadParameter("--all-subscriptions goes with --operator")
    _sqlite_dir(db)
    engine = make_engine(db)
    upgrade(engine)
    kind, subject = chosen[0]
    try:
        print(tokens.create(engine, kind, subject, tokens.ALL_SUBSCRIPTIONS if all_subscriptions else None))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@token_app.command("list")
def token_list(db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB")) -> None:
    """Every token: id, kind, subject, scope, when created and revoked (never the secret)."""
    engine = make_engine(db)
    upgrade(engine)
    table = Table(title="tokens")
    for header in ("id", "kind", "subject", "scope", "created", "revoked"):
        table.add_column(header)
    for row in tokens.listing(engine):
        table.add_row(*(row[k] or "-" for k in ("id", "kind", "subject", "scope", "created", "revoked")))
    Console().print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., help="The token's id: ism_<id>_… of the secret."),
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB"),
) -> None:
    """Revoke a token (controllers stop accepting it within 5 s)."""
    engine = make_engine(db)
    upgrade(engine)
    if not tokens.revoke(engine, token_id):
        raise typer.BadParameter(f"no token with id {token_id} that is not revoked already")
    print(f"revoked {token_id}")


@pki_app.command("init")
def pki_init(
    directory: Path = typer.Option(DEFAULT_PKI, "--dir", help="Where the CA, certificate and secrets key go."),
    name: list[str] = typer.Option(list(pki.DEFAULT_NAMES), help="Server names and addresses (repeat)."),
) -> None:
    """Create a CA and a secrets key (both kept if present) and a fresh server certificate."""
    ca = pki.init(directory, tuple(name))
    print(ca)


@pki_app.command("rotate-secrets-key")
def pki_rotate_secrets_key(
    directory: Path = typer.Option(DEFAULT_PKI, "--dir", help="The directory holding secrets.key."),
    secrets_key: Path | None = typer.Option(None, help="The key file, if not DIR/secrets.key."),
    db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB"),
) -> None:
    """Make a new secrets key and re-seal every stored pre-shared key under it, in one transaction; the old
    key file is replaced once that has committed. Running controllers follow (they re-read the key file)."""
    path = secrets_key or directory / pki.SECRETS_KEY
    if not path.exists():
        raise typer.BadParameter(f"no secrets key at {path}")
    engine = make_engine(db)
    upgrade(engine)
    key_id, count = sealed.rotate(engine, path)
    print(f"secrets key {key_id} in {path}: {count} pre-shared keys re-sealed")


@db_app.command("upgrade")
def db_upgrade(db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB")) -> None:
    """Apply the store's migrations."""
    _sqlite_dir(db)
    upgrade(make_engine(db))
