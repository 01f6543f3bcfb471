"""`isthmus group create|list|show|delete`: resource groups (Microsoft.Resources), as `az group` has them."""

from __future__ import annotations

import sys

import typer

from isthmus.cli import client, crud
from isthmus.cli.arm_nouns import DEFAULT_LOCATION, SUBSCRIPTION_HELP
from isthmus.cli.client import RESOURCES_API, CliError, Column, arm_list, get, settings, subscription

group_app = typer.Typer(help="Resource groups: every tenant resource lives in one.", no_args_is_help=True)
API = {"api-version": RESOURCES_API}
SUB = typer.Option(None, "--subscription", "-s", envvar="ISTHMUS_SUBSCRIPTION", help=SUBSCRIPTION_HELP)
NAME = typer.Argument(..., help="The resource group's name.")
COLUMNS = (
    Column("name", lambda r: r["name"]),
    Column("location", lambda r: r.get("location")),
    Column("state", lambda r: (r.get("properties") or {}).get("provisioningState"), drop=1),
)


def _path(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourcegroups/{name}"


@group_app.command("create")
def group_create(
    ctx: typer.Context,
    name: str = NAME,
    location: str = typer.Option(DEFAULT_LOCATION, "--location", "-l", help="One of the controller's locations."),
    subscription_id: str | None = SUB,
) -> None:
    """Create a resource group (or keep it as it is if it exists in that location).

    Example: isthmus group create lab
    """
    s = settings(ctx)
    body = client.call(s, "PUT", _path(subscription(s, subscription_id), name), params=API, body={"location": location})
    crud.show_one(s, body.json(), COLUMNS, f"resource group {name}")


@group_app.command("show")
def group_show(ctx: typer.Context, name: str = NAME, subscription_id: str | None = SUB) -> None:
    """Show a resource group (its full id last)."""
    s = settings(ctx)
    crud.show_one(s, get(s, _path(subscription(s, subscription_id), name), API), COLUMNS, f"resource group {name}")


@group_app.command("list")
def group_list(ctx: typer.Context, subscription_id: str | None = SUB) -> None:
    """List the subscription's resource groups."""
    s = settings(ctx)
    rows = list(arm_list(s, f"/subscriptions/{subscription(s, subscription_id)}/resourcegroups", RESOURCES_API))
    client.show(s, rows, COLUMNS, "resource groups")


@group_app.command("delete")
def group_delete(
    ctx: typer.Context,
    name: str = NAME,
    subscription_id: str | None = SUB,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: every resource in the group goes too."),
    no_wait: bool = crud.NO_WAIT.default,
    timeout: float = crud.TIMEOUT.default,
) -> None:
    """Delete a resource group and every resource in it (users first: connections, gateways, NICs…)."""
    s = settings(ctx)
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"deleting resource group {name} deletes every resource in it: pass --yes to confirm")
        typer.confirm(f"Delete resource group {name} and every resource in it?", abort=True)
    response = client.call(s, "DELETE", _path(subscription(s, subscription_id), name), params=API)
    if response.status_code == 204:
        print(f"resource group {name} does not exist: nothing deleted", file=sys.stderr)
        return
    if not no_wait:
        crud.wait_for_operation(s, f"resource group {name}", response, timeout)
    print(f"resource group {name} deleted", file=sys.stderr)
