"""Tenant resources as `az network`-like nouns: one generic create|show|list|update|delete over any
Microsoft.Network collection (or child collection), each noun declaring its options and how they fill
the resource (cli/resources.py holds the table of nouns)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer

from isthmus.cli import client, crud
from isthmus.cli.client import NETWORK_API, CliError, Column, Settings, arm_list, get, settings, subscription
from isthmus.cli.crud import Opt, plural
from isthmus.model import ids

SUBSCRIPTION_HELP = "Subscription id (default: the one a tenant token reaches)."
DEFAULT_LOCATION = "local"  # the controller's default --location


@dataclass(frozen=True)
class Where:
    """The subscription and resource group a command works in: names given for references resolve here."""

    subscription: str
    group: str

    def id(self, collection: str, name_or_id: str, child: str | None = None, child_name: str | None = None) -> str:
        """`name_or_id` as a full id (a given id is kept as it is)."""
        if name_or_id.lower().startswith("/subscriptions/"):
            return name_or_id
        rid = ids.ResourceId(self.subscription, self.group, collection, name_or_id)
        return str(rid.child(child, child_name) if child and child_name else rid)


@dataclass(frozen=True)
class Parent:
    """A child noun's parent: subnets of a virtual network, rules of a network security group."""

    flag: str  # --vnet-name
    collection: str  # virtualNetworks
    child: str  # subnets
    what: str  # virtual network

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


Apply = Callable[[Where, dict[str, Any], dict[str, Any], bool], None]


@dataclass(frozen=True)
class Noun:
    """One CLI noun over a tenant collection: `apply(where, resource, given options, creating)` fills the
    resource from the typed options (only those given; on create the noun's defaults too)."""

    command: str  # vnet
    what: str  # virtual network
    collection: str  # virtualNetworks
    columns: tuple[Column, ...]
    options: tuple[Opt, ...] = ()
    apply: Apply = lambda _w, _b, _g, _c: None
    parent: Parent | None = None
    verbs: tuple[str, ...] = ("create", "show", "list", "update", "delete")
    help: str = ""
    example: str = ""
    located: bool = True  # top-level resources have a location
    extra: dict[str, Any] = field(default_factory=dict)
    # Adds what the resource alone does not say to the rows shown (e.g. the node carrying a connection).
    enrich: Callable[[Settings, list[dict[str, Any]]], list[dict[str, Any]]] = lambda _s, rows: rows

    def path(self, where: Where, name: str, parent: str | None) -> str:
        base = f"/subscriptions/{where.subscription}/resourceGroups/{where.group}/providers/Microsoft.Network"
        if self.parent is None:
            return f"{base}/{self.collection}/{name}"
        return f"{base}/{self.parent.collection}/{parent}/{self.parent.child}/{name}"


API = {"api-version": NETWORK_API}
GROUP = crud.option(
    "group", str | None, typer.Option(None, "--group", "-g", envvar="ISTHMUS_GROUP", help="Resource group.")
)
SUB = crud.option(
    "subscription",
    str | None,
    typer.Option(None, "--subscription", "-s", envvar="ISTHMUS_SUBSCRIPTION", help=SUBSCRIPTION_HELP),
)
NAME = inspect.Parameter(
    "name",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=str,
    default=typer.Argument(..., help="Its name, or its full id."),
)


def locate(
    s: Settings, noun: Noun, name: str, group: str | None, sub: str | None, parent: str | None
) -> tuple[Where, str, str | None]:
    """Where the resource NAME (or a full id) lives: its Where, its name, its parent's name."""
    parsed = ids.parse(name) if name.lower().startswith("/subscriptions/") else None
    if parsed is not None:
        if parsed.collection.lower() != (noun.parent.collection if noun.parent else noun.collection).lower():
            raise CliError(f"{name} is not the id of a {noun.what}")
        if noun.parent is not None:
            if not parsed.child_name:
                raise CliError(f"{name} is not the id of a {noun.what}")
            return Where(parsed.subscription, parsed.resource_group), parsed.child_name, parsed.name
        return Where(parsed.subscription, parsed.resource_group), parsed.name, None
    if not group:
        raise CliError(f"which resource group is {noun.what} {name!r} in? Pass --group/-g (or its full id)")
    if noun.parent is not None and not parent:
        raise CliError(f"which {noun.parent.what} is {noun.what} {name!r} in? Pass {noun.parent.flag}")
    return Where(subscription(s, sub), group), name, parent


def add_commands(app: typer.Typer, noun: Noun) -> None:
    """create|show|list|update|delete of `noun` on `app`."""
    parent = (
        [
            crud.option(
                noun.parent.dest, str | None, typer.Option(None, noun.parent.flag, help=f"The {noun.parent.what}.")
            )
        ]
        if noun.parent
        else []
    )
    typed = [opt.parameter() for opt in noun.options]
    location = (
        [
            crud.option(
                "location",
                str | None,
                typer.Option(None, "--location", "-l", help=f"Location (default: {DEFAULT_LOCATION})."),
            )
        ]
        if noun.located
        else []
    )
    where = [GROUP, SUB, *parent]
    waits = [crud.NO_WAIT, crud.TIMEOUT]

    def parent_of(values: dict[str, Any]) -> str | None:
        return values.get(noun.parent.dest) if noun.parent else None

    def create(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        spot, name, parent_name = locate(s, noun, name, values["group"], values["subscription"], parent_of(values))
        body: dict[str, Any] = {"properties": {}}
        if noun.located:
            body["location"] = values.get("location") or DEFAULT_LOCATION
        noun.apply(spot, body, crud.given(noun.options, values), True)
        crud.assign(body, values["assignments"] or [])
        path = noun.path(spot, name, parent_name)
        done = _write(s, noun, path, body, {"If-None-Match": "*"}, f"{noun.what} {name}", values)
        crud.show_one(s, done, noun.columns, f"{noun.what} {name}")

    def update(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        spot, name, parent_name = locate(s, noun, name, values["group"], values["subscription"], parent_of(values))
        path = noun.path(spot, name, parent_name)
        current = client.call(s, "GET", path, params=API)
        body = current.json()
        changes = crud.given(noun.options, values)
        if not changes and not values["assignments"]:
            raise CliError(f"nothing to change: give {noun.what} options or --set PATH=VALUE (see --help)")
        noun.apply(spot, body, changes, False)
        crud.assign(body, values["assignments"] or [])
        etag = body.get("etag") or current.headers.get("ETag")
        done = _write(s, noun, path, body, {"If-Match": etag} if etag else {}, f"{noun.what} {name}", values)
        crud.show_one(s, done, noun.columns, f"{noun.what} {name}")

    def show_(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        spot, name, parent_name = locate(s, noun, name, values["group"], values["subscription"], parent_of(values))
        [body] = noun.enrich(s, [get(s, noun.path(spot, name, parent_name), API)])
        crud.show_one(s, body, noun.columns, f"{noun.what} {name}")

    def list_(ctx: typer.Context, **values: Any) -> None:
        s = settings(ctx)
        sub = subscription(s, values["subscription"])
        group = values["group"]
        if noun.parent is not None:
            parent_name = parent_of(values)
            if not group or not parent_name:
                raise CliError(
                    f"{plural(noun.what)} are listed per {noun.parent.what}: pass --group/-g and {noun.parent.flag}"
                )
            path = noun.path(Where(sub, group), "", parent_name).rstrip("/")
            title = f"{plural(noun.what)} of {parent_name}"
        elif group:
            path = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/{noun.collection}"
            title = f"{plural(noun.what)} in {group}"
        else:
            path = f"/subscriptions/{sub}/providers/Microsoft.Network/{noun.collection}"
            title = f"{plural(noun.what)}"
        client.show(s, noun.enrich(s, list(arm_list(s, path))), noun.columns, title)

    def delete(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        spot, name, parent_name = locate(s, noun, name, values["group"], values["subscription"], parent_of(values))
        response = client.call(s, "DELETE", noun.path(spot, name, parent_name), params=API)
        if response.status_code == 204:
            print(f"{noun.what} {name} does not exist in {spot.group}: nothing deleted", file=sys.stderr)
            return
        if response.status_code == 202 and not values["no_wait"]:
            crud.wait_for_operation(s, f"{noun.what} {name}", response, values["timeout"])
        print(f"{noun.what} {name} deleted" + (" (in progress)" if values["no_wait"] else ""), file=sys.stderr)

    context = [crud.CONTEXT]
    example = f"\n\nExample: {noun.example}" if noun.example else ""
    verbs: dict[str, tuple[str, list[inspect.Parameter], Callable[..., None]]] = {
        "create": (
            f"Create a {noun.what}.{example}",
            [*context, NAME, *where, *location, *typed, crud.SET, *waits],
            create,
        ),
        "show": (f"Show a {noun.what} (its full id last).", [*context, NAME, *where], show_),
        "list": (
            f"List the {plural(noun.what)}"
            + (f" of a {noun.parent.what}." if noun.parent else " of the subscription, or of one group (-g)."),
            [*context, *where],
            list_,
        ),
        "update": (
            f"Change a {noun.what}: the options given (and --set), the rest kept (GET, merge, PUT with If-Match).",
            [*context, NAME, *where, *typed, crud.SET, *waits],
            update,
        ),
        "delete": (f"Delete a {noun.what} (waits until it is gone).", [*context, NAME, *where, *waits], delete),
    }
    for verb in noun.verbs:
        doc, params, body = verbs[verb]
        crud.command(app, verb, doc, params, body)


def _write(
    s: Settings, noun: Noun, path: str, body: dict[str, Any], headers: dict[str, str], what: str, values: dict[str, Any]
) -> Any:
    done = crud.put_conditionally(s, path, body, headers, what, noun.command, **API).json()
    if values.get("no_wait"):
        return done
    return crud.wait_for_state(what, done, lambda: get(s, path, API), values.get("timeout", crud.WAIT_SECONDS))


def group_of(row: dict[str, Any]) -> str:
    return str(row["id"].split("/")[4]) if row.get("id") else "-"


def ref(value: Any) -> Any:
    """The id of a {"id": ...} reference (or a list of them)."""
    if isinstance(value, list):
        return [ref(v) for v in value]
    return value.get("id") if isinstance(value, dict) else value


def either(single: str, plural: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get("properties") or {}).get(plural) or (r.get("properties") or {}).get(single)


def one_or_many(target: dict[str, Any], single: str, plural: str, values: Sequence[str]) -> None:
    """Azure's pair of fields (addressPrefix / addressPrefixes): one value in the first, several in the second."""
    target.pop(single, None)
    target.pop(plural, None)
    if len(values) == 1:
        target[single] = values[0]
    else:
        target[plural] = list(values)


def reference(target: dict[str, Any], key: str, value: str | None) -> None:
    """Set the reference `key` to the id `value`; an empty value removes it."""
    if value:
        target[key] = {"id": value}
    else:
        target.pop(key, None)
