"""Read commands: what tenants and operators look at, as tables or JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from isthmus.api.state import LIVE_SECONDS
from isthmus.cli import client
from isthmus.cli.client import NETWORK_API, arm_list, get, post, settings, show
from isthmus.model import ids

vnet_app = typer.Typer(help="Virtual networks.", no_args_is_help=True)
publicip_app = typer.Typer(help="Public IP addresses.", no_args_is_help=True)
nsg_app = typer.Typer(help="Network security groups.", no_args_is_help=True)
pool_app = typer.Typer(help="Gateway pools (operator).", no_args_is_help=True)
gateway_app = typer.Typer(help="Gateway nodes (operator).", no_args_is_help=True)
node_app = typer.Typer(help="Registered agent nodes (operator).", no_args_is_help=True)

SUBSCRIPTION = typer.Option(
    None, "--subscription", "-s", envvar="ISTHMUS_SUBSCRIPTION", help="Subscription id [default: the token's own]."
)


def _props(key: str) -> Any:
    return lambda row: row.get("properties", {}).get(key)


def _group(row: dict[str, Any]) -> str:
    return str(row["id"].split("/")[4])


def _tenant_list(ctx: typer.Context, subscription: str | None, collection: str) -> list[dict[str, Any]]:
    s = settings(ctx)
    return list(
        arm_list(s, f"/subscriptions/{client.subscription(s, subscription)}/providers/Microsoft.Network/{collection}")
    )


@vnet_app.command("list")
def vnet_list(ctx: typer.Context, subscription: str | None = SUBSCRIPTION) -> None:
    rows = _tenant_list(ctx, subscription, "virtualNetworks")
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("group", _group),
            ("location", lambda r: r["location"]),
            ("address space", lambda r: r["properties"]["addressSpace"]["addressPrefixes"]),
            (
                "subnets",
                lambda r: [
                    f"{s['name']} {s['properties'].get('addressPrefix') or s['properties'].get('addressPrefixes')}"
                    for s in r["properties"]["subnets"]
                ],
            ),
            ("state", _props("provisioningState")),
        ],
        "virtual networks",
    )


@publicip_app.command("list")
def publicip_list(ctx: typer.Context, subscription: str | None = SUBSCRIPTION) -> None:
    rows = _tenant_list(ctx, subscription, "publicIPAddresses")
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("group", _group),
            ("address", _props("ipAddress")),
            ("allocation", _props("publicIPAllocationMethod")),
            ("sku", lambda r: r.get("sku", {}).get("name")),
            ("attached to", lambda r: (r["properties"].get("ipConfiguration") or {}).get("id")),
        ],
        "public IP addresses",
    )


@nsg_app.command("list")
def nsg_list(ctx: typer.Context, subscription: str | None = SUBSCRIPTION) -> None:
    rows = _tenant_list(ctx, subscription, "networkSecurityGroups")
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("group", _group),
            ("rules", lambda r: len(r["properties"]["securityRules"])),
            ("subnets", lambda r: len(r["properties"].get("subnets", []))),
            ("nics", lambda r: len(r["properties"].get("networkInterfaces", []))),
        ],
        "network security groups",
    )


@nsg_app.command("verify")
def nsg_verify(
    ctx: typer.Context,
    nic: str = typer.Option(..., help="The networkInterfaces id."),
    direction: str = typer.Option("Inbound", help="Inbound or Outbound, seen from the NIC."),
    protocol: str = typer.Option("TCP", help="TCP, UDP or ICMP."),
    local: str = typer.Option(..., help="The NIC's side: ADDRESS:PORT."),
    remote: str = typer.Option(..., help="The other side: ADDRESS:PORT."),
) -> None:
    """IP flow verify: Allow or Deny, and the rule that decides, for one flow at a NIC (no packet is sent)."""
    parsed = ids.parse(nic)
    if parsed is None:
        raise typer.BadParameter("--nic must be a networkInterfaces id")
    (local_ip, local_port), (remote_ip, remote_port) = (_endpoint(local, "--local"), _endpoint(remote, "--remote"))
    path = (
        f"/subscriptions/{parsed.subscription}/resourceGroups/{parsed.resource_group}"
        "/providers/Microsoft.Network/networkWatchers/NetworkWatcher_local/ipFlowVerify"
    )
    question = {"targetResourceId": nic, "direction": direction, "protocol": protocol, "localPort": local_port,
                "remotePort": remote_port, "localIPAddress": local_ip, "remoteIPAddress": remote_ip}  # fmt: skip
    answer = post(settings(ctx), path, question, {"api-version": NETWORK_API})
    columns = [("access", lambda r: r["access"]), ("rule", lambda r: r["ruleName"]),
               ("network security group", lambda r: r.get("networkSecurityGroup"))]  # fmt: skip
    show(settings(ctx), [answer], columns, "IP flow verify", raw=answer)


def _endpoint(text: str, option: str) -> tuple[str, str]:
    address, _, port = text.rpartition(":")
    if not address or not port:
        raise typer.BadParameter(f"{option} is ADDRESS:PORT")
    return address.strip("[]"), port


@nsg_app.command("show")
def nsg_show(
    ctx: typer.Context,
    name: str,
    group: str = typer.Option(..., "--group", "-g"),
    subscription: str | None = SUBSCRIPTION,
    defaults: bool = typer.Option(False, "--defaults", help="Include the default rules."),
) -> None:
    sub = client.subscription(settings(ctx), subscription)
    path = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/networkSecurityGroups/{name}"
    body = get(settings(ctx), path, {"api-version": "2026-03-01"})
    rules = list(body["properties"]["securityRules"])
    if defaults:
        rules += body["properties"]["defaultSecurityRules"]
    rules.sort(key=lambda r: (r["properties"]["direction"], r["properties"]["priority"]))

    def either(single: str, plural: str) -> Any:
        return lambda r: r["properties"].get(plural) or r["properties"].get(single)

    show(
        settings(ctx),
        rules,
        [
            ("priority", _props("priority")),
            ("name", lambda r: r["name"]),
            ("direction", _props("direction")),
            ("access", _props("access")),
            ("protocol", _props("protocol")),
            ("source", either("sourceAddressPrefix", "sourceAddressPrefixes")),
            ("source ports", either("sourcePortRange", "sourcePortRanges")),
            ("destination", either("destinationAddressPrefix", "destinationAddressPrefixes")),
            ("destination ports", either("destinationPortRange", "destinationPortRanges")),
        ],
        f"security rules of {name}",
        raw=body,
    )


def _admin_list(ctx: typer.Context, collection: str) -> list[dict[str, Any]]:
    return list(get(settings(ctx), f"/admin/{collection}")["value"])


@pool_app.command("list")
def pool_list(ctx: typer.Context) -> None:
    rows = _admin_list(ctx, "gatewayPools")
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("type", _props("type")),
            ("redundant (N)", _props("redundantGatewayCount")),
            ("capacity kbps", _props("gatewayCapacityKbps")),
            ("tier kbps", _props("tierBandwidthKbps")),
        ],
        "gateway pools",
    )


@gateway_app.command("list")
def gateway_list(ctx: typer.Context) -> None:
    rows = _admin_list(ctx, "gateways")
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("node", _props("node")),
            ("pool", _props("pool")),
        ],
        "gateways",
    )


def _health(row: dict[str, Any]) -> str:
    age = (datetime.now(UTC) - datetime.fromisoformat(row["lastSeen"])).total_seconds()
    return "live" if age <= LIVE_SECONDS else f"silent {age:.0f} s"


@node_app.command("list")
def node_list(ctx: typer.Context) -> None:
    rows = get(settings(ctx), "/admin/nodes")["value"]
    show(
        settings(ctx),
        rows,
        [
            ("name", lambda r: r["name"]),
            ("role", lambda r: r["role"]),
            ("address", lambda r: r["address"]),
            ("applied revision", lambda r: r["appliedRevision"]),
            ("last seen", lambda r: r["lastSeen"]),
            ("health", _health),
        ],
        "nodes",
    )


def placement(ctx: typer.Context) -> None:
    """Where each virtual network gateway is placed, and why any is not."""
    body = get(settings(ctx), "/admin/placement")
    s = settings(ctx)
    if s.output == "json":
        show(s, [], [], "", raw=body)
        return
    show(
        s,
        body["placed"],
        [
            ("virtual network gateway", lambda r: r["virtualNetworkGateway"].split("/")[-1]),
            ("pool", lambda r: r["pool"]),
            ("gateway", lambda r: r["gateway"]),
            ("node", lambda r: r["node"]),
            ("connections", lambda r: len(r["connections"])),
            ("kbps", lambda r: r["kbps"]),
        ],
        "placed",
    )
    if body["unplaced"]:
        show(
            s,
            body["unplaced"],
            [
                ("virtual network gateway", lambda r: r["virtualNetworkGateway"]),
                ("reason", lambda r: r["reason"]),
            ],
            "unplaced",
        )


def events(
    ctx: typer.Context,
    after: int | None = typer.Option(None, help="Events after this id (default: the latest)."),
    limit: int = typer.Option(50),
) -> None:
    """The events timeline (operator)."""
    params = {"limit": str(limit)} | ({"after": str(after)} if after is not None else {})
    rows = get(settings(ctx), "/admin/events", params)["value"]
    show(
        settings(ctx),
        rows,
        [
            ("id", lambda r: r["id"]),
            ("at", lambda r: r["at"]),
            ("revision", lambda r: r["revision"]),
            ("kind", lambda r: r["kind"]),
            ("message", lambda r: r["message"]),
        ],
        "events",
    )
