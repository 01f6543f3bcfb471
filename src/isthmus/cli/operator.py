"""Operator commands over /admin: create|show|list|update|delete of gateway pools, gateways, MUXes, hosts,
public IP pools and port bindings (one generic implementation, per-noun options), plus `node list|show`,
`placement` and `events [--follow]`; `gateway drain|undrain|failover|remove` (planned moves)."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from isthmus.cli import client, crud
from isthmus.cli.client import CliError, Column, Settings, emit, get, settings
from isthmus.cli.crud import Opt, plural, props
from isthmus.model import ids
from isthmus.model.admin import drain_ended

Apply = Callable[[dict[str, Any], dict[str, Any], bool], None]


@dataclass(frozen=True)
class AdminNoun:
    """An operator object collection; `apply(properties, given options, creating)` fills its properties."""

    command: str
    what: str
    collection: str
    columns: tuple[Column, ...]
    options: tuple[Opt, ...]
    apply: Apply
    help: str
    example: str
    # Adds what the objects alone do not say to the rows shown (a gateway's role and load, from the placement).
    enrich: Callable[[Settings, list[dict[str, Any]]], list[dict[str, Any]]] = lambda _s, rows: rows


def _copy(pairs: dict[str, str]) -> Apply:
    """An apply that copies options to properties: {flag: property}."""

    def apply(p: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
        for flag, key in pairs.items():
            if flag in given:
                p[key] = given[flag]

    return apply


def _with_placement(s: Settings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each gateway with its role, liveness and load (used of capacity, kbps) and how many virtual network
    gateways it carries, as the placement says."""
    placement = get(s, "/admin/placement")
    members = {g["name"].lower(): g for pool in placement["pools"] for g in pool["gateways"]}
    carries: dict[str, int] = {}
    for placed in placement["placed"]:
        carries[placed["gateway"].lower()] = carries.get(placed["gateway"].lower(), 0) + 1
    return [{**row, "placement": members.get(row["name"].lower(), {}), "carries": carries.get(row["name"].lower(), 0)}
            for row in rows]  # fmt: skip


def _load(row: dict[str, Any]) -> str:
    member = row.get("placement") or {}
    if "capacityKbps" not in member:
        return ""
    used, capacity = member.get("usedKbps", 0), member["capacityKbps"]
    return f"{used // 1000}/{capacity // 1000} Mbps ({100 * used // max(1, capacity)}%)"


def _pool(p: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    pairs = {
        "--type": "type",
        "--redundant-gateways": "redundantGatewayCount",
        "--capacity-kbps": "gatewayCapacityKbps",
        "--tier-kbps": "tierBandwidthKbps",
    }
    _copy(pairs)(p, given, creating)
    _shared_public_ip(p, given)
    if "--also-tier-kbps" in given:
        tiers = [str(t) for t in given["--also-tier-kbps"]]
        if not all(t.isdigit() for t in tiers):
            raise CliError(f"--also-tier-kbps takes whole kbps (e.g. 200000), not {', '.join(tiers)}")
        p["additionalTiersKbps"] = [int(t) for t in tiers]
    if creating:
        p.setdefault("type", "All")


def _shared_public_ip(p: dict[str, Any], given: dict[str, Any]) -> None:
    """--public-ip-address ADDR (Static) | none (the pool shares no address); --public-ip-allocation Dynamic."""
    address = given.get("--public-ip-address")
    if address is not None and address.lower() == "none":
        p.pop("publicIpAddress", None)
        p.pop("publicIpAllocationMethod", None)
    elif address is not None:
        p["publicIpAddress"], p["publicIpAllocationMethod"] = address, "Static"
    method = given.get("--public-ip-allocation")
    if method is not None:
        if method not in ("Static", "Dynamic"):
            raise CliError(f"--public-ip-allocation is Static or Dynamic, not {method!r}")
        if method == "Static" and "publicIpAddress" not in p:
            raise CliError("--public-ip-allocation Static needs --public-ip-address")
        p["publicIpAllocationMethod"] = method


def _mux(p: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    _copy({"--node": "node", "--asn": "asn", "--router-id": "routerId"})(p, given, creating)
    if "--peer" in given:
        peers = []
        for text in given["--peer"]:
            address, _, asn = text.rpartition(":")
            if not address or not asn.isdigit():
                raise CliError(f"--peer is ADDRESS:ASN (e.g. 192.0.2.1:65001), not {text!r}")
            peers.append({"address": address.strip("[]"), "asn": int(asn)})
        p["peers"] = peers


def _binding(p: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    _copy({"--host": "host"})(p, given, creating)
    if "--nic" in given:
        nic = given["--nic"]
        if not nic.lower().startswith("/subscriptions/"):
            if "--nic-group" not in given or "--nic-subscription" not in given:
                raise CliError("--nic NAME needs --nic-group and --nic-subscription (or give the NIC's full id)")
            nic = str(ids.ResourceId(given["--nic-subscription"], given["--nic-group"], "networkInterfaces", nic))
        p["networkInterface"] = nic


NOUNS = {
    noun.command: noun
    for noun in (
        AdminNoun(
            "pool",
            "gateway pool",
            "gatewayPools",
            (
                Column("name", lambda r: r["name"]),
                Column("type", props("type")),
                Column("redundant (N)", props("redundantGatewayCount"), drop=2),
                Column("capacity kbps", props("gatewayCapacityKbps"), drop=1),
                Column("tier kbps", props("tierBandwidthKbps"), drop=3),
                Column("public IP", props("publicIpAddress"), drop=4),
            ),
            (
                Opt("--type", "All (default), S2sIpsec, S2sGre or Forwarding."),
                Opt("--redundant-gateways", "N of M+N: gateways kept free to take over (default 1).", type=int),
                Opt("--capacity-kbps", "What one gateway of the pool carries.", type=int),
                Opt("--tier-kbps", "What one connection of the pool is sold at.", type=int),
                Opt("--also-tier-kbps", "A further tier the pool is sold at (repeatable).", many=True),
                Opt(
                    "--public-ip-address",
                    "One public IP for all pools: the address (from a public IP pool) every "
                    "IKEv2 and GRE endpoint of this pool answers on, shared with the pools that name it; none: no "
                    "shared address.",
                ),
                Opt(
                    "--public-ip-allocation",
                    "Dynamic: the controller allocates the shared address (then name it on the other pools).",
                ),
            ),
            _pool,
            "Gateway pools (operator).",
            "isthmus pool create pool1 --capacity-kbps 1000000 --tier-kbps 100000",
        ),
        AdminNoun(
            "gateway",
            "gateway",
            "gateways",
            (
                Column("name", lambda r: r["name"]),
                Column("node", props("node")),
                Column("pool", props("pool")),
                Column("role", lambda r: r.get("placement", {}).get("role")),
                Column("liveness", lambda r: r.get("placement", {}).get("liveness"), drop=3),
                Column("load", _load, drop=1),
                Column("carries", lambda r: r.get("carries"), drop=4),
                Column("service", props("serviceState"), drop=2),
                Column("state", props("provisioningState"), drop=5),
            ),
            (
                Opt("--node", "The agent node that is this gateway."),
                Opt("--pool", "Its gateway pool."),
                Opt("--service-state", "InService (default) or OutOfService (moves what it carries away)."),
            ),
            _copy({"--node": "node", "--pool": "pool", "--service-state": "serviceState"}),
            "Gateway nodes (operator): role, liveness and load from the placement.",
            "isthmus gateway create gw-a --node gw-a --pool pool1",
            _with_placement,
        ),
        AdminNoun(
            "mux",
            "load balancer MUX",
            "loadBalancerMuxes",
            (
                Column("name", lambda r: r["name"]),
                Column("node", props("node")),
                Column("asn", props("asn"), drop=2),
                Column("router id", props("routerId"), drop=3),
                Column("peers", lambda r: [f"{p['address']}:{p['asn']}" for p in props("peers")(r) or []], drop=1),
            ),
            (
                Opt("--node", "The agent node that is this MUX."),
                Opt("--asn", "Its BGP ASN.", type=int),
                Opt("--router-id", "Its BGP router id (an IPv4 address)."),
                Opt("--peer", "A BGP peer, ADDRESS:ASN.", many=True),
            ),
            _mux,
            "SLB MUX nodes (operator).",
            "isthmus mux create mux-a --node mux-a --asn 65010 --router-id 198.18.0.10 --peer 198.18.0.1:65000",
        ),
        AdminNoun(
            "host",
            "host",
            "hosts",
            (
                Column("name", lambda r: r["name"]),
                Column("node", props("node")),
                Column("address", props("address")),
                Column("outbound NAT", props("outboundNatAddress"), drop=1),
                Column("state", props("provisioningState"), drop=2),
            ),
            (Opt("--node", "The agent node that is this host."), Opt("--address", "Its underlay (VTEP) address.")),
            _copy({"--node": "node", "--address": "address"}),
            "Hypervisor hosts (operator).",
            "isthmus host create host-a --node host-a --address 198.18.1.10",
        ),
        AdminNoun(
            "publicip-pool",
            "public IP pool",
            "publicIpPools",
            (
                Column("name", lambda r: r["name"]),
                Column("prefixes", props("addressPrefixes")),
                Column("state", props("provisioningState"), drop=1),
            ),
            (Opt("--address-prefixes", "The public prefixes tenants' public IPs come from.", many=True),),
            _copy({"--address-prefixes": "addressPrefixes"}),
            "Public IP pools (operator): where tenants' public IP addresses come from.",
            "isthmus publicip-pool create public1 --address-prefixes 203.0.113.0/24",
        ),
        AdminNoun(
            "port-binding",
            "port binding",
            "portBindings",
            (
                Column("name", lambda r: r["name"]),
                Column("nic", props("networkInterface")),
                Column("host", props("host")),
                Column("state", props("provisioningState"), drop=1),
            ),
            (
                Opt("--nic", "The network interface: its id, or NAME with --nic-group and --nic-subscription."),
                Opt("--nic-group", "The NIC's resource group (with --nic NAME)."),
                Opt("--nic-subscription", "The NIC's subscription (with --nic NAME)."),
                Opt("--host", "The node of the host its VM runs on."),
            ),
            _binding,
            "Port bindings (operator): which host a NIC's VM runs on.",
            "isthmus port-binding create vm1 --nic /subscriptions/…/networkInterfaces/nic1 --host host-a",
        ),
    )
}


def add_commands(app: typer.Typer, noun: AdminNoun) -> None:
    """create|show|list|update|delete of `noun` on `app`."""
    typed = [opt.parameter() for opt in noun.options]
    name = inspect.Parameter(
        "name", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Argument(..., help="Its name.")
    )
    context = [crud.CONTEXT]

    def path(object_name: str) -> str:
        return f"/admin/{noun.collection}/{object_name}"

    def create(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        body: dict[str, Any] = {"properties": {}}
        noun.apply(body["properties"], crud.given(noun.options, values), True)
        crud.assign(body, values["assignments"] or [])
        done = _put(s, noun, name, body, {"If-None-Match": "*"})
        crud.show_one(s, done, noun.columns, f"{noun.what} {name}")

    def update(ctx: typer.Context, name: str, **values: Any) -> None:
        s = settings(ctx)
        body = get(s, path(name))
        changes = crud.given(noun.options, values)
        if not changes and not values["assignments"]:
            raise CliError(f"nothing to change: give {noun.what} options or --set PATH=VALUE (see --help)")
        noun.apply(body["properties"], changes, False)
        crud.assign(body, values["assignments"] or [])
        done = _put(s, noun, name, body, {"If-Match": body["etag"]} if body.get("etag") else {})
        crud.show_one(s, done, noun.columns, f"{noun.what} {name}")

    def show_(ctx: typer.Context, name: str) -> None:
        s = settings(ctx)
        [body] = noun.enrich(s, [get(s, path(name))])
        crud.show_one(s, body, noun.columns, f"{noun.what} {name}")

    def list_(ctx: typer.Context) -> None:
        s = settings(ctx)
        rows = noun.enrich(s, get(s, f"/admin/{noun.collection}")["value"])
        client.show(s, rows, noun.columns, f"{plural(noun.what)}")

    def delete(ctx: typer.Context, name: str) -> None:
        s = settings(ctx)
        response = client.call(s, "DELETE", path(name))
        gone = "does not exist: nothing deleted" if response.status_code == 204 else "deleted"
        print(f"{noun.what} {name} {gone}", file=sys.stderr)

    example = f"\n\nExample: {noun.example}"
    verbs: dict[str, tuple[str, list[inspect.Parameter], Callable[..., None]]] = {
        "create": (f"Create a {noun.what}.{example}", [*context, name, *typed, crud.SET], create),
        "show": (f"Show a {noun.what}.", [*context, name], show_),
        "list": (f"List the {plural(noun.what)}.", context, list_),
        "update": (
            f"Change a {noun.what}: the options given (and --set), the rest kept (GET, merge, PUT with If-Match).",
            [*context, name, *typed, crud.SET],
            update,
        ),
        "delete": (f"Delete a {noun.what}.", [*context, name], delete),
    }
    for verb, (doc, params, body) in verbs.items():
        crud.command(app, verb, doc, params, body)


def _put(s: Settings, noun: AdminNoun, name: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    url = f"/admin/{noun.collection}/{name}"
    return crud.put_conditionally(s, url, body, headers, f"{noun.what} {name}", noun.command).json()


def app_for(command: str) -> typer.Typer:
    noun = NOUNS[command]
    app = typer.Typer(help=noun.help, no_args_is_help=True)
    add_commands(app, noun)
    return app


pool_app = app_for("pool")
gateway_app = app_for("gateway")
host_app = app_for("host")
publicip_pool_app = app_for("publicip-pool")
port_binding_app = app_for("port-binding")
node_app = typer.Typer(help="Registered agent nodes (operator).", no_args_is_help=True)


def add_mux_commands(app: typer.Typer) -> None:
    """The MUX objects' commands beside `mux routes` (cli/mux.py)."""
    add_commands(app, NOUNS["mux"])


# --- nodes, placement, events -------------------------------------------------------------------------------


def datapath_summary(node: dict[str, Any]) -> str:
    """The datapath a node chose, one word per function in the functions' alphabetical order ("no-gre" where
    its kernel has none); "-" for a node that registered without probing (or a controller that does not say)."""
    chosen: dict[str, str] = node.get("datapath") or {}
    words = [f"no-{function}" if how in ("unavailable", "none") else how for function, how in sorted(chosen.items())]
    return ",".join(words) or "-"


NODE_COLUMNS = (
    Column("name", lambda r: r["name"]),
    Column("role", lambda r: r["role"]),
    Column("address", lambda r: r["address"], drop=2),
    Column("applied rev", lambda r: r["appliedRevision"], drop=1),
    Column("last seen", lambda r: client.when(r["lastSeen"])),
    Column("health", lambda r: client.health(r["lastSeen"])),
    Column("datapath", datapath_summary, drop=3),
)


@node_app.command("list")
def node_list(ctx: typer.Context) -> None:
    """The agent nodes that registered: role, address, the revision they applied, when last heard of, and
    the datapath each chose from its kernel's capabilities."""
    s = settings(ctx)
    client.show(s, get(s, "/admin/nodes")["value"], NODE_COLUMNS, "nodes")


def _entry(section: str, key: str) -> Callable[[dict[str, Any]], Any]:
    def value(node: dict[str, Any]) -> Any:
        found = node[section][key]
        return ("yes" if found else "no") if isinstance(found, bool) else found

    return value


def _session(peer: str) -> Callable[[dict[str, Any]], Any]:
    return lambda node: node["status"]["sessions"][peer]


@node_app.command("show")
def node_show(ctx: typer.Context, name: str = typer.Argument(..., help="The node's name.")) -> None:
    """One registered node: what `node list` shows, with every capability its kernel was probed for,
    each data-plane function's implementation, and (a MUX) the state of each of its BGP sessions."""
    s = settings(ctx)
    node = next((n for n in get(s, "/admin/nodes")["value"] if n["name"] == name), None)
    if node is None:
        raise CliError(f"no node {name!r} has registered (`isthmus node list` shows those that have)")
    node.setdefault("capabilities", {})
    node.setdefault("datapath", {})
    columns = [c for c in NODE_COLUMNS if c.header != "datapath"]
    columns += [Column(key, _entry("capabilities", key)) for key in node["capabilities"]]
    columns += [Column(f"datapath {key}", _entry("datapath", key)) for key in node["datapath"]]
    if not node["capabilities"]:
        columns.append(Column("capabilities", lambda _n: "unknown (registered without probing)"))
    sessions = (node.get("status") or {}).get("sessions") or {}
    columns += [Column(f"bgp {peer}", _session(peer)) for peer in sorted(sessions)]
    crud.show_one(s, node, columns, f"node {name}")


def placement(ctx: typer.Context) -> None:
    """Where each virtual network gateway is placed, and why any is not."""
    s = settings(ctx)
    body = get(s, "/admin/placement")
    if s.output != "table":
        emit(s, body)
        return
    placed = (
        Column("virtual network gateway", lambda r: r["virtualNetworkGateway"]),
        Column("pool", lambda r: r["pool"]),
        Column("gateway", lambda r: r["gateway"]),
        Column("node", lambda r: r["node"], drop=2),
        Column("connections", lambda r: len(r["connections"]), drop=1),
        Column("kbps", lambda r: r["kbps"], drop=3),
    )
    client.show(s, body["placed"], placed, "placed")
    if body["unplaced"]:
        unplaced = (
            Column("virtual network gateway", lambda r: r["virtualNetworkGateway"]),
            Column("reason", lambda r: r["reason"]),
        )
        client.show(s, body["unplaced"], unplaced, "unplaced")


# --- planned moves: drain, undrain, failover, remove; the events timeline followed --------------------------

FOLLOW_SECONDS = 0.5


def _details(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get("details") or {}).get(key)


EVENT_COLUMNS = (
    Column("id", lambda r: r["id"], drop=2),
    Column("at", lambda r: client.when(r["at"])),
    Column("rev", lambda r: r["revision"], drop=3),
    Column("kind", lambda r: r["kind"], drop=1),
    Column("node", _details("node"), drop=4),
    Column("VNet gateway", _details("virtualNetworkGateway"), drop=5),
    Column("ms", _details("ms"), drop=6),
    Column("message", lambda r: r["message"]),
)


def _print_event(s: Settings, event: dict[str, Any]) -> None:
    if s.output != "table":
        emit(s, event)
        return
    d = event.get("details") or {}
    extra = " ".join(f"{k}={client.short_id(str(d[k])) if not s.ids else d[k]}"
                     for k in ("node", "virtualNetworkGateway", "ms") if d.get(k) is not None)  # fmt: skip
    print(f"{event['id']} {client.when(event['at'])} {event['kind']} {extra} {event['message']}".replace("  ", " "))


def _latest_event(s: Settings) -> int:
    latest = get(s, "/admin/events", {"limit": "1"})["value"]
    return int(latest[-1]["id"]) if latest else 0


def _follow(s: Settings, after: int, until: Callable[[dict[str, Any]], bool] | None = None) -> None:
    """Print the events after `after` as they come (every FOLLOW_SECONDS), until `until` says so or Ctrl-C."""
    try:
        while True:
            for event in get(s, "/admin/events", {"after": str(after), "limit": "1000"})["value"]:
                after = int(event["id"])
                _print_event(s, event)
                if until is not None and until(event):
                    return
            time.sleep(FOLLOW_SECONDS)
    except KeyboardInterrupt:
        return


def _drain(s: Settings, name: str, force: bool, wait: bool) -> None:
    after = _latest_event(s) if wait else 0
    body = client.post(s, f"/admin/gateways/{name}/drain", None, {"force": "true"} if force else None)
    state = body["properties"]["serviceState"]
    print(f"gateway {name} is {state}", file=sys.stderr)
    if wait and state == "Draining":
        _follow(s, after, drain_ended(name))


@gateway_app.command("drain")
def gateway_drain(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The gateway's name."),
    force: bool = typer.Option(False, "--force", help="Drain even if some of its load would have nowhere to go."),
    wait: bool = typer.Option(False, "--wait", help="Follow the drain's steps until it is done."),
) -> None:
    """Move what a gateway carries to others, one virtual network gateway at a time (each once the last is
    Connected where it went, or after 15 s), then OutOfService. Refused if something would have nowhere to go.

    Example: isthmus gateway drain gw-a --wait"""
    _drain(settings(ctx), name, force, wait)


@gateway_app.command("undrain")
def gateway_undrain(ctx: typer.Context, name: str = typer.Argument(..., help="The gateway's name.")) -> None:
    """InService again: a running drain stops; it takes nothing back (it rejoins as standby or active)."""
    s = settings(ctx)
    body = client.post(s, f"/admin/gateways/{name}/undrain", None)
    print(f"gateway {name} is {body['properties']['serviceState']}", file=sys.stderr)


@gateway_app.command("failover")
def gateway_failover(
    ctx: typer.Context, vnet_gateway_id: str = typer.Argument(..., help="The virtual network gateway's ARM id.")
) -> None:
    """A drill: one virtual network gateway to its pool's standby (else the active with most room)."""
    s = settings(ctx)
    body = client.post(s, "/admin/placement/failover", {"virtualNetworkGateway": vnet_gateway_id})
    if s.output != "table":
        emit(s, body)
        return
    print(f"{client.short_id(body['virtualNetworkGateway'])}: {body['from']} -> {body['to']} ({body['reason']})")


@gateway_app.command("remove")
def gateway_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The gateway's name."),
    force: bool = typer.Option(False, "--force", help="Drain and delete even if M+N or its load is not kept."),
) -> None:
    """Drain a gateway (following its steps), then delete it."""
    s = settings(ctx)
    _drain(s, name, force, wait=True)
    response = client.call(s, "DELETE", f"/admin/gateways/{name}", params={"force": "true"} if force else None)
    gone = "does not exist: nothing deleted" if response.status_code == 204 else "drained and deleted"
    print(f"gateway {name} {gone}", file=sys.stderr)


def events(
    ctx: typer.Context,
    after: int | None = typer.Option(None, help="Events after this id (default: the latest)."),
    limit: int = typer.Option(50, help="How many at most."),
    scope: str | None = typer.Option(None, help="Only this scope: a subscription id, or admin."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Then print new ones as they come (Ctrl-C ends)."),
) -> None:
    """The events timeline (operator): what changed and what the nodes reported, newest last; node, VNet
    gateway and timing (ms) from the events' details."""
    s = settings(ctx)
    params = {"limit": str(limit)} | ({"after": str(after)} if after is not None else {})
    params |= {"scope": scope} if scope else {}
    shown = get(s, "/admin/events", params)["value"]
    client.show(s, shown, EVENT_COLUMNS, "events")
    if follow:
        _follow(s, int(shown[-1]["id"]) if shown else (after or _latest_event(s)))
