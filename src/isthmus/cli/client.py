"""How the CLI talks to the controller and prints what it gets."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

NETWORK_API = "2026-03-01"
console = Console()


@dataclass
class Settings:
    controller: str
    token: str | None
    ca: str | None
    output: str


def settings(ctx: typer.Context) -> Settings:
    value: Settings = ctx.obj
    return value


def client(s: Settings) -> httpx.Client:
    if not s.token:
        raise typer.BadParameter("no token: pass --token or set ISTHMUS_TOKEN")
    verify: Any = s.ca if s.ca else True
    return httpx.Client(
        base_url=s.controller, headers={"Authorization": f"Bearer {s.token}"}, verify=verify, timeout=30.0
    )


def get(s: Settings, path: str, params: dict[str, str] | None = None) -> Any:
    with client(s) as http:
        return _answer(http.get(path, params=params))


def post(s: Settings, path: str, body: Any, params: dict[str, str] | None = None) -> Any:
    with client(s) as http:
        return _answer(http.post(path, params=params, json=body))


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text
        console.print(f"[red]error[/red] {response.status_code} {message}")
        raise typer.Exit(1)
    return response.json()


def arm_list(s: Settings, path: str) -> Iterator[dict[str, Any]]:
    """Every item of an ARM list, following nextLink."""
    body = get(s, path, {"api-version": NETWORK_API})
    while True:
        yield from body.get("value", [])
        link = body.get("nextLink")
        if not link:
            return
        body = get(s, link)


def show(
    s: Settings,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
    title: str,
    raw: Any = None,
) -> None:
    if s.output == "json":
        print(json.dumps(raw if raw is not None else list(rows), indent=2))
        return
    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*[_cell(getter(row)) for _, getter in columns])
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)
