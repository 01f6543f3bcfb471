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

from isthmus.cli.client import CliError, Column, Settings, call, show

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


def put_conditionally(
    s: Settings, path: str, body: Any, headers: dict[str, str], what: str, command: str, **params: str
) -> httpx.Response:
    """PUT with If-Match or If-None-Match; a 412 is said as what it means for `what`."""
    try:
        return call(s, "PUT", path, params=params or None, body=body, headers=headers)
    except CliError as error:
        if error.status != 412:
            raise
        if "If-None-Match" in headers:
            raise CliError(f"{what} exists already: `isthmus {command} update` changes it", 412) from None
        raise CliError(f"{what} changed while this command ran: run it again", 412) from None


def props(key: str) -> Callable[[dict[str, Any]], Any]:
    """A column getter: the resource's properties.KEY."""
    return lambda row: (row.get("properties") or {}).get(key)


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
        why = (body.get("properties") or {}).get("connectionStatusReason")
        raise CliError(f"{what} is Failed: {why}" if why else f"{what} is Failed: a node cannot apply it "
                       "(`isthmus events` says why)")  # fmt: skip
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
    show(s, rows, [Column("field", lambda r: r["field"]), Column("value", lambda r: r["value"])], title, raw=body)
    if s.output == "table" and body.get("id"):
        print(f"id: {body['id']}")


def plural(what: str) -> str:
    return what + ("es" if what.endswith(("s", "x", "X")) else "s")
