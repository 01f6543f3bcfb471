"""What the generic create/show/list/update/delete commands share: typed options declared as data, commands
built from them, `--set path=value`, conditional writes, and bounded waits for long-running operations."""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from isthmus.cli.client import (
    MAX_UNBROKEN,
    CliError,
    Column,
    Settings,
    _cell,
    _connect_failure,
    _error_text,
    _unbroken,
    client,
    console,
    emit,
)

WAIT_SECONDS = 120.0  # how long a command waits for a long-running operation by default
BUSY_STATES = {"updating", "creating", "deleting", "provisioning", "inprogress", "accepted"}


@dataclass(frozen=True)
class Opt:
    """A typed option of a noun's create and update: `--flag VALUE` (repeatable when `many`)."""

    flag: str
    help: str
    type: type = str
    many: bool = False  # repeat it, or give several values comma-separated
    short: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def parameter(self) -> inspect.Parameter:
        flags = [self.flag, *([self.short] if self.short else [])]
        annotation: Any = list[str] | None if self.many else self.type | None
        help_text = self.help + (" Repeat it, or separate values with commas." if self.many else "")
        return option(self.dest, annotation, typer.Option(None, *flags, help=help_text))


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
SET = option(
    "assignments",
    list[str] | None,
    typer.Option(
        None,
        "--set",
        help="PATH=VALUE: set any field, e.g. --set properties.enableIPForwarding=true --set tags.env=lab "
        "(the value is read as JSON when it parses, else as text). Repeat it.",
    ),
)
NO_WAIT = option("no_wait", bool, typer.Option(False, "--no-wait", help="Return without waiting for the operation."))
TIMEOUT = option(
    "timeout", float, typer.Option(WAIT_SECONDS, "--timeout", help="Seconds to wait for the operation at most.")
)


def command(
    app: typer.Typer, verb: str, doc: str, params: Sequence[inspect.Parameter], body: Callable[..., None]
) -> None:
    """Register `body(**options)` as `verb` of `app`, with the options `params` declares."""

    def run(**kwargs: Any) -> None:
        body(**kwargs)

    run.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    run.__doc__ = doc
    app.command(verb, help=doc)(run)


def given(options: Sequence[Opt], values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave, by flag; repeated ones as lists (commas split)."""
    out: dict[str, Any] = {}
    for opt in options:
        value = values.get(opt.dest)
        if value is None or value == []:
            continue
        if opt.many:
            value = [part for item in value for part in re.split(r"[,\s]+", item) if part]
        out[opt.flag] = value
    return out


# --- --set PATH=VALUE ---------------------------------------------------------------------------------


def assign(body: dict[str, Any], assignments: Sequence[str]) -> None:
    for assignment in assignments:
        path, eq, text = assignment.partition("=")
        steps = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        if not eq or not steps:
            raise CliError(f"--set takes PATH=VALUE (e.g. properties.enableIPForwarding=true), not {assignment!r}")
        node: Any = body
        for step, following in zip(steps, [*steps[1:], None], strict=True):
            key: Any = int(step[1:-1]) if step.startswith("[") else step
            if isinstance(key, int) != isinstance(node, list) or (isinstance(key, int) and key >= len(node)):
                raise CliError(f"--set {path}: there is no {step} at that place of the resource")
            if following is None:
                node[key] = _value(text, node[key] if isinstance(key, int) else node.get(key))
            else:
                if not isinstance(key, int) and not isinstance(node.get(key), dict | list):
                    node[key] = [] if following.startswith("[") else {}
                node = node[key]


def _value(text: str, current: Any) -> Any:
    """`text` as JSON when it parses (true, 4, ["a"]), but kept as text where the field holds text ("80")."""
    if isinstance(current, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- requests with headers, and waiting -----------------------------------------------------------------


def call(
    s: Settings,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request whose status and headers the caller reads; an error answer or a failure is a CliError."""
    with client(s) as http:
        try:
            response = http.request(method, url, params=params, json=body, headers=headers)
        except httpx.ConnectError as error:
            raise CliError(_connect_failure(s, error)) from error
        except httpx.HTTPError as error:
            raise CliError(f"{method} {url} failed: {error}") from error
    if response.status_code >= 400:
        raise CliError(f"{response.status_code} {_error_text(response)}")
    return response


def state_of(body: Any) -> str:
    props = body.get("properties") if isinstance(body, dict) else None
    return str((props or {}).get("provisioningState") or "")


def wait_for_state(what: str, body: dict[str, Any], fetch: Callable[[], dict[str, Any]], timeout: float) -> Any:
    """`body` once its provisioningState settles (polling `fetch`), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while state_of(body).lower() in BUSY_STATES:
        if time.monotonic() >= deadline:
            raise CliError(
                f"{what} is still {state_of(body)} after {timeout:.0f} s (the nodes have not applied it yet): "
                "`show` tells when it is Succeeded, `isthmus events` what the nodes report"
            )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        body = fetch()
    if state_of(body) == "Failed":
        raise CliError(f"{what} is Failed: a node cannot apply it (`isthmus events` says why)")
    return body


def wait_for_operation(s: Settings, what: str, response: httpx.Response, timeout: float) -> None:
    """Poll a 202's Azure-AsyncOperation (or Location) until the operation ends, for at most `timeout`."""
    status_url = response.headers.get("Azure-AsyncOperation")
    location = response.headers.get("Location")
    deadline = time.monotonic() + timeout
    while status_url or location:
        if status_url:
            status = str((call(s, "GET", status_url).json() or {}).get("status", ""))
            if status.lower() == "failed":
                raise CliError(f"deleting {what} failed (`isthmus events` says why)")
            if status.lower() not in BUSY_STATES:
                return
        elif location and call(s, "GET", location).status_code != 202:
            return
        if time.monotonic() >= deadline:
            raise CliError(f"deleting {what} has not finished after {timeout:.0f} s: `show` tells when it is gone")
        time.sleep(
            min(float(response.headers.get("Retry-After", "1") or 1), 5.0, max(0.0, deadline - time.monotonic()))
        )


# --- printing one resource ----------------------------------------------------------------------------------


def show_one(s: Settings, body: dict[str, Any], columns: Sequence[Column], title: str) -> None:
    """One resource as a field/value table followed by its full id (to copy), or as JSON/YAML."""
    rows = [{"field": c.header, "value": c.get(body)} for c in columns]
    table(s, rows, [Column("field", lambda r: r["field"]), Column("value", lambda r: r["value"])], title, raw=body)
    if s.output == "table" and body.get("id"):
        print(f"id: {body['id']}")


def plural(what: str) -> str:
    return what + ("es" if what.endswith(("s", "x", "X")) else "s")


def table(s: Settings, rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str, raw: Any = None) -> None:
    """client.show with the widths chosen here: rich, given only minimum widths, shrinks the widest column
    below its minimum and then crops the table (a short cell with a space, "silent 38 s", never wraps). Each
    shown column gets its longest word, then what is left goes to the columns in their order of importance.
    (client.show could take this over.)"""
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
