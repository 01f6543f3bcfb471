"""Commands run on the controller's machine: the controller itself, tokens, PKI, the schema.

The store and the web stack are imported by the commands that use them: every other command would pay
their second of import time at start-up."""

from __future__ import annotations

import errno
import functools
import logging
import re
import socket
import sys
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from isthmus import __version__, pki, sealing
from isthmus.cli.client import CliError
from isthmus.linux.sockets import listen_here, listen_in_netns
from isthmus.model.snapshot import FabricSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

DEFAULT_DB = "sqlite:///var/isthmus.db"
LOCATION_NAME = re.compile(r"[a-z0-9-]{1,64}")
DEFAULT_PKI = Path("var/pki")
PROBE_SOURCES = tuple(str(network) for network in FabricSettings().azure_load_balancer)

token_app = typer.Typer(help="Bearer tokens for tenants, operators and nodes.", no_args_is_help=True)
pki_app = typer.Typer(help="The controller's CA and server certificate.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)


def open_store(db: str) -> Engine:
    """The store at `db`, migrated (a SQLite file and its directory are made if absent)."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from isthmus.store.db import make_engine, upgrade

    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        Path(db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(db)
    except (ArgumentError, ValueError):
        raise CliError(f"--db {db!r} is not a database URL: sqlite:///PATH or postgresql://…") from None
    try:
        upgrade(engine)
    except OperationalError as error:
        raise CliError(f"cannot open the store {shown_store(db)}: {error.orig}") from None
    return engine


def shown_store(db: str) -> str:
    """`db` as a person should read it: a SQLite file's absolute path, a PostgreSQL URL without its password."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        return f"sqlite:///{Path(db.removeprefix('sqlite:///')).absolute()}"
    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        return db


def _secrets_key(engine: Engine, path: Path) -> Path:
    """`path`, made now if absent, unless the store holds secrets sealed under a key that must be there."""
    from isthmus.store import sealed

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
    lease_interval: float = typer.Option(0.1, help="Seconds between a gateway's lease renewals."),
    lease_duration: float = typer.Option(0.6, help="Seconds a renewal holds, from its receipt: then failover."),
    lease_grace: float = typer.Option(
        3.0, help="At start-up (and on becoming the leader), seconds a gateway has to renew before it is failed."
    ),
    name: str | None = typer.Option(None, help="This replica's name in events and /healthz [default: HOST:PORT]."),
) -> None:
    """Run the controller: tenant API, operator API and agent protocol. On PostgreSQL, run as many replicas
    as you like on one database: one leads (it judges leases and moves drains), every one serves."""
    # Imported here: the application and its web stack take a second to import, which every other command
    # would pay at start-up.
    from isthmus.api import listener
    from isthmus.api.app import create_app
    from isthmus.api.arm.service import normal_location
    from isthmus.api.leases import Leases
    from isthmus.sealing import SealError

    locations = tuple(normal_location(name) for name in location)
    if not locations or not all(LOCATION_NAME.fullmatch(name) for name in locations):
        raise typer.BadParameter("location names are letters, digits and '-', 1 to 64", param_hint="--location")
    try:
        settings = FabricSettings(tuple(ip_network(p) for p in azure_load_balancer), locations)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--azure-load-balancer") from None
    try:
        leases = Leases(interval=lease_interval, duration=lease_duration, grace=lease_grace)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--lease-interval") from None
    tls = None if tls_dir is None else _tls_material(tls_dir)
    engine = open_store(db)
    _sole_sqlite_controller(db)
    logging.basicConfig(level=log_level.upper())
    key = _secrets_key(engine, secrets_key or (tls_dir or DEFAULT_PKI) / pki.SECRETS_KEY)
    scheme = "https" if tls else "http"
    sockets = [_listening(f"{host}:{port}", functools.partial(listen_here, host, port))]
    addresses = [f"{scheme}://{_joined(host, port)}"]
    for spec in listen_netns:
        netns, _, rest = spec.partition(":")
        address, _, listen_port = rest.rpartition(":")
        if not netns or not address or not listen_port.isdigit():
            raise typer.BadParameter(f"--listen-netns wants NETNS:ADDRESS:PORT, not {spec!r}")
        sockets.append(_listening(spec, functools.partial(listen_in_netns, netns, address, int(listen_port))))
        addresses.append(f"{scheme}://{_joined(address, int(listen_port))} in netns {netns}")
    try:
        app = create_app(engine, settings=settings, secrets_key=key, leases=leases,
                         name=name or f"{socket.gethostname()}:{port}")  # fmt: skip
    except SealError as error:
        raise typer.BadParameter(str(error), param_hint="--secrets-key") from None
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(f"isthmus controller {__version__}: listening on {', '.join(addresses)}")
    shared = "" if db.startswith("sqlite") else ": replicas on it elect a leader"
    say(f"  store {shown_store(db)}{shared}")
    say(f"  TLS certificate {tls[0]}, key {tls[1]}" if tls else "  no TLS (plain HTTP: pass --tls-dir to serve HTTPS)")
    say(f"  secrets key {key.absolute()}; locations {', '.join(locations)}")
    listener.serve(app, sockets, log_level=log_level, tls=tls)


_held_locks: list[int] = []  # this process's lock on its SQLite store: held until it exits


def _sole_sqlite_controller(db: str) -> None:
    """SQLite takes one controller: a second on the same file would judge leases beside the first. Its lock
    (`DB.controller`, flock: released with the process, however it ends) refuses the second, naming the first."""
    if not db.startswith("sqlite:///") or db == "sqlite:///:memory:":
        return
    import fcntl
    import os

    store = Path(db.removeprefix("sqlite:///")).absolute()
    fd = os.open(store.with_name(store.name + ".controller"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise CliError(f"another controller (pid {holder}) serves the SQLite store {shown_store(db)}: SQLite takes "
                       "one controller; run replicas on PostgreSQL (--db postgresql://…)") from None  # fmt: skip
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held_locks.append(fd)


def _tls_material(tls_dir: Path) -> tuple[str, str]:
    cert, key = tls_dir / pki.SERVER_CERT, tls_dir / pki.SERVER_KEY
    for path in (cert, key):
        if not path.is_file():
            raise CliError(f"--tls-dir: {path.absolute()} is missing; `isthmus pki init --dir {tls_dir}` makes it")
    return str(cert.absolute()), str(key.absolute())


def _listening(where: str, bind: Callable[[], socket.socket]) -> socket.socket:
    try:
        return bind()
    except ValueError:
        raise CliError(f"cannot listen on {where}: give an IP address, not a host name (--host)") from None
    except OSError as error:
        hint = ": another controller may hold it; pick --port" if error.errno == errno.EADDRINUSE else ""
        raise CliError(f"cannot listen on {where} ({error.strerror or error}){hint}") from None


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    from isthmus.store import tokens

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
    fresh = db.startswith("sqlite:///") and not Path(db.removeprefix("sqlite:///")).exists()
    engine = open_store(db)
    kind, subject = chosen[0]
    try:
        print(tokens.create(engine, kind, subject, tokens.ALL_SUBSCRIPTIONS if all_subscriptions else None))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    # A token lives in one store: a controller on another --db does not know it.
    made = "a new, empty store" if fresh else "the store"
    article = "an" if kind[0] in "aeiou" else "a"
    print(
        f"{article} {kind} token in {made} {shown_store(db)}: the controller must run with that --db", file=sys.stderr
    )


@token_app.command("list")
def token_list(db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB")) -> None:
    """Every token: id, kind, subject, scope, when created and revoked (never the secret)."""
    from isthmus.store import tokens

    engine = open_store(db)
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
    from isthmus.store import tokens

    engine = open_store(db)
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
    from isthmus.store import sealed

    path = secrets_key or directory / pki.SECRETS_KEY
    if not path.exists():
        raise typer.BadParameter(f"no secrets key at {path}")
    engine = open_store(db)
    key_id, count = sealed.rotate(engine, path)
    print(f"secrets key {key_id} in {path}: {count} pre-shared keys re-sealed")


@db_app.command("upgrade")
def db_upgrade(db: str = typer.Option(DEFAULT_DB, envvar="ISTHMUS_DB")) -> None:
    """Apply the store's migrations."""
    open_store(db)
