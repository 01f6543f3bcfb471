"""How the CLI talks to the controller and prints what it gets."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from isthmus.cli.entry import CliError as CliError  # where the CLI and the agent entry both find it
from isthmus.model.limits import LIVE_SECONDS

NETWORK_API = "2026-03-01"
RESOURCES_API = "2024-11-01"
OUTPUTS = ("table", "json", "yaml")
console = Console()


@dataclass
class Settings:
    controller: str
    token: str | None
    ca: str | None
    output: str = "table"
    wide: bool = False  # every column, however wide the terminal
    ids: bool = False  # full resource ids instead of names


def settings(ctx: typer.Context) -> Settings:
    value: Settings = ctx.find_root().obj
    return value


def client(s: Settings) -> httpx.Client:
    if not s.token:
        raise CliError("no token: pass --token or set ISTHMUS_TOKEN (`isthmus token create` makes one)")
    if not s.controller.startswith(("https://", "http://")):
        raise CliError(f"the controller URL starts with https:// (https://127.0.0.1:8443), not {s.controller!r}")
    return httpx.Client(
        base_url=s.controller, headers={"Authorization": f"Bearer {s.token}"}, verify=_verify(s), timeout=30.0
    )


def _verify(s: Settings) -> ssl.SSLContext | bool:
    if not s.ca:
        return True
    path = Path(s.ca)
    if not path.is_file():
        raise CliError(f"the CA file {path.absolute()} does not exist (--ca or ISTHMUS_CA)")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        raise CliError(f"the CA file {path.absolute()} holds no PEM certificate (--ca or ISTHMUS_CA)") from None


def call(
    s: Settings,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request whose status and headers the caller reads; an ARM error or a connection failure is a
    CliError."""
    with client(s) as http:
        try:
            response = http.request(method, path, params=params, json=body, headers=headers)
        except httpx.ConnectError as error:
            raise CliError(_connect_failure(s, error)) from error
        except httpx.TimeoutException as error:
            raise CliError(f"the controller at {s.controller} did not answer within 30 s") from error
        except httpx.RemoteProtocolError as error:
            raise CliError(
                f"the controller at {s.controller} did not answer HTTP as expected ({error}): does the URL's "
                "scheme match the controller's (https:// with --tls-dir)?"
            ) from error
        except httpx.HTTPError as error:
            raise CliError(f"{method} {s.controller}{path} failed: {error}") from error
    if response.status_code >= 400:
        raise CliError(f"{response.status_code} {_error_text(response)}", response.status_code)
    return response


def request(s: Settings, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None) -> Any:
    """The answer's JSON (None if it has no body)."""
    response = call(s, method, path, params=params, body=body)
    return response.json() if response.content else None


def _connect_failure(s: Settings, error: httpx.ConnectError) -> str:
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        trusted = f"the CA in {s.ca}" if s.ca else "the system's CAs (no --ca given)"
        return (
            f"the controller at {s.controller} has a certificate {trusted} does not vouch for: pass the "
            "controller's CA (var/pki/ca.pem, or the lab's) with --ca or ISTHMUS_CA"
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"the controller at {s.controller} does not speak TLS: use http:// if it runs without --tls-dir"
    reason = text.rpartition("] ")[2] or text or type(error).__name__
    return (
        f"cannot reach the controller at {s.controller} ({reason}): is it running? (--controller, ISTHMUS_CONTROLLER)"
    )


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        target = f" [{error['target']}]" if error.get("target") else ""
        return f"{error['code']}: {error['message']}{target}"
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:300] or response.reason_phrase


def get(s: Settings, path: str, params: dict[str, str] | None = None) -> Any:
    return request(s, "GET", path, params=params)


def post(s: Settings, path: str, body: Any, params: dict[str, str] | None = None) -> Any:
    return request(s, "POST", path, params=params, body=body)


def arm_list(s: Settings, path: str, api_version: str = NETWORK_API) -> Iterator[dict[str, Any]]:
    """Every item of an ARM list, following nextLink."""
    body = get(s, path, {"api-version": api_version})
    while True:
        yield from body.get("value", [])
        link = body.get("nextLink")
        if not link:
            return
        body = get(s, link)


def subscription(s: Settings, given: str | None) -> str:
    """`given`, or the one subscription the token reaches (Azure's Subscriptions - List)."""
    if given:
        return given
    reached = [sub["subscriptionId"] for sub in arm_list(s, "/subscriptions", "2022-12-01")]
    if len(reached) != 1:
        raise CliError("this token names no subscription: pass --subscription/-s or set ISTHMUS_SUBSCRIPTION")
    return str(reached[0])


# --- output ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column. When the terminal is too narrow for every column, the highest `drop` goes first
    (0: never dropped); `--wide` shows them all."""

    header: str
    get: Callable[[dict[str, Any]], Any]
    drop: int = 0


ColumnSpec = Column | tuple[str, Callable[[dict[str, Any]], Any]]
MAX_UNBROKEN = 40  # a cell's longest word is kept whole up to this width; longer ones fold


def show(s: Settings, rows: Sequence[dict[str, Any]], specs: Sequence[ColumnSpec], title: str, raw: Any = None) -> None:
    """`rows` as a table that fits the terminal, or `raw` (default: the rows) as JSON or YAML. The widths are
    chosen here: rich, given only minimum widths, shrinks the widest column below its minimum and then crops
    the table. Each shown column gets its longest word (columns dropped, highest `drop` first, until those
    fit), then what is left goes to the columns in their order of importance."""
    columns = [c if isinstance(c, Column) else Column(c[0], c[1], drop=i) for i, c in enumerate(specs)]
    if s.output != "table":
        emit(s, raw if raw is not None else list(rows))
        return
    cells = [[_cell(c.get(row), s.ids) for c in columns] for row in rows]
    words = [
        min(max([len(c.header), *(_unbroken(row[i]) for row in cells)]), MAX_UNBROKEN) for i, c in enumerate(columns)
    ]
    full = [
        max([len(c.header), *(len(line) for row in cells for line in row[i].splitlines())])
        for i, c in enumerate(columns)
    ]
    shown = list(range(len(columns)))
    room = console.width

    def overhead() -> int:
        return 3 * len(shown) + 1

    hidden: list[str] = []
    while not s.wide and sum(words[i] for i in shown) + overhead() > room and any(columns[i].drop for i in shown):
        victim = max((i for i in shown if columns[i].drop), key=lambda i: columns[i].drop)
        shown.remove(victim)
        hidden.append(columns[victim].header)
    widths = {i: full[i] if s.wide else words[i] for i in shown}
    spare = room - overhead() - sum(widths.values())
    for i in sorted(shown, key=lambda i: (columns[i].drop, i)):
        extra = max(0, min(full[i] - widths[i], spare))
        widths[i] += extra
        spare -= extra
    rich = Table(title=title)
    for i in shown:
        rich.add_column(columns[i].header, width=widths[i], overflow="fold")
    for row in cells:
        rich.add_row(*[row[i] for i in shown])
    out = Console(width=max(room, sum(widths.values()) + overhead())) if s.wide else console
    out.print(rich)
    if hidden:
        out.print(f"[dim]not shown for the terminal's width: {', '.join(reversed(hidden))} (--wide shows all)[/dim]")


def emit(s: Settings, value: Any) -> None:
    """`value` as JSON, or YAML with -o yaml (for commands whose answer is not a table)."""
    if s.output == "yaml":
        print(yaml.safe_dump(value, sort_keys=False, allow_unicode=True), end="")
    else:
        print(json.dumps(value, indent=2))


def _unbroken(text: str) -> int:
    return max((len(word) for line in text.splitlines() for word in line.split()), default=1)


def _cell(value: Any, full_ids: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v, full_ids) for v in value) or "-"
    text = str(value)
    return text if full_ids else short_id(text)


def short_id(text: str) -> str:
    """An ARM id as its resource's name (a child's as PARENT/CHILD); anything else unchanged."""
    if not text.lower().startswith("/subscriptions/") or "/providers/" not in text.lower():
        return text
    parts = text.split("/")
    at = [p.lower() for p in parts].index("providers") + 2  # past providers/Microsoft.Network
    names = parts[at + 1 :: 2]
    return "/".join(names) if names else text


def when(text: str | None) -> str:
    """An ISO time as YYYY-MM-DDTHH:MM:SSZ (tables have no room for microseconds; one word, so never folded)."""
    if not text:
        return "-"
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def health(last_seen: str) -> str:
    """A node's health as `node list` and `lab status` show it: live, or silent for how long."""
    age = (datetime.now(UTC) - datetime.fromisoformat(last_seen)).total_seconds()
    return "live" if age <= LIVE_SECONDS else f"silent {age:.0f} s"
