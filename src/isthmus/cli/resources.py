"""The tenant nouns (`isthmus vnet|subnet|nic|nsg|nsg rule|publicip|vnet-gateway|local-gateway|connection`):
per noun its options, az's names where az has one, and how they fill the resource; plus `nsg show` (the
rules) and `nsg verify` (IP flow verify)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import typer

from isthmus.cli import client
from isthmus.cli.arm_nouns import (
    API,
    GROUP,
    SUB,
    Noun,
    Parent,
    Where,
    add_commands,
    either,
    group_of,
    locate,
    one_or_many,
    ref,
    reference,
)
from isthmus.cli.client import NETWORK_API, CliError, Column, Settings, get, post, settings
from isthmus.cli.crud import Opt, props
from isthmus.model.security_rules import ACCESS, DIRECTIONS, PROTOCOLS

NETWORK = "Microsoft.Network"


def _choice(value: str, choices: dict[str, str], flag: str) -> str:
    """`value` in its canonical spelling, whatever its case."""
    found = choices.get(value.lower())
    if found is None:
        raise CliError(f"{flag} is one of {', '.join(choices.values())}, not {value!r}")
    return found


def _parent_name(row: dict[str, Any]) -> str:
    return str(row["id"].split("/")[-3]) if row.get("id") else "-"


# --- virtual networks and subnets ---------------------------------------------------------------------------


def _vnet(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if "--address-prefixes" in given:
        p["addressSpace"] = {"addressPrefixes": given["--address-prefixes"]}
    if "--dns-servers" in given:
        p["dhcpOptions"] = {"dnsServers": given["--dns-servers"]}
    if "--subnet-name" in given or "--subnet-prefixes" in given:
        if "--subnet-name" not in given or "--subnet-prefixes" not in given:
            raise CliError("--subnet-name and --subnet-prefixes go together (a subnet needs both)")
        subnet: dict[str, Any] = {"name": given["--subnet-name"], "properties": {}}
        one_or_many(subnet["properties"], "addressPrefix", "addressPrefixes", given["--subnet-prefixes"])
        subnets = [s for s in p.get("subnets", []) if s["name"].lower() != subnet["name"].lower()]
        p["subnets"] = [*subnets, subnet]


def _subnet_prefixes(row: dict[str, Any]) -> Any:
    return either("addressPrefix", "addressPrefixes")(row)


VNET = Noun(
    "vnet",
    "virtual network",
    "virtualNetworks",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=4),
        Column("location", lambda r: r.get("location"), drop=5),
        Column("address space", lambda r: (props("addressSpace")(r) or {}).get("addressPrefixes")),
        Column("subnets", lambda r: [f"{s['name']} {_subnet_prefixes(s)}" for s in props("subnets")(r) or []], drop=2),
        Column("state", props("provisioningState"), drop=3),
    ),
    (
        Opt("--address-prefixes", "The address space, in CIDR notation.", many=True),
        Opt("--subnet-name", "A subnet to create with it (with --subnet-prefixes)."),
        Opt("--subnet-prefixes", "That subnet's prefixes.", many=True),
        Opt("--dns-servers", "DNS servers for its VMs.", many=True),
    ),
    _vnet,
    help="Virtual networks.",
    example="isthmus vnet create net1 -g lab --address-prefixes 100.64.0.0/16 --subnet-name web "
    "--subnet-prefixes 100.64.1.0/24",
)


def _subnet(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if "--address-prefixes" in given:
        one_or_many(p, "addressPrefix", "addressPrefixes", given["--address-prefixes"])
    if "--nsg" in given:
        reference(p, "networkSecurityGroup", given["--nsg"] and where.id("networkSecurityGroups", given["--nsg"]))


SUBNET = Noun(
    "subnet",
    "subnet",
    "subnets",
    (
        Column("name", lambda r: r["name"]),
        Column("vnet", _parent_name, drop=3),
        Column("prefixes", _subnet_prefixes),
        Column("nsg", lambda r: ref(props("networkSecurityGroup")(r)), drop=2),
        Column("ip configs", lambda r: len(props("ipConfigurations")(r) or []), drop=4),
        Column("state", props("provisioningState"), drop=5),
    ),
    (
        Opt("--address-prefixes", "The subnet's prefixes (inside the VNet's address space).", many=True),
        Opt("--nsg", "Network security group: name (same group) or id; '' removes it."),
    ),
    _subnet,
    parent=Parent("--vnet-name", "virtualNetworks", "subnets", "virtual network"),
    located=False,
    help="Subnets of a virtual network.",
    example="isthmus subnet create web -g lab --vnet-name net1 --address-prefixes 100.64.1.0/24",
)


# --- network interfaces -----------------------------------------------------------------------------------


def _nic(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    configs = p.setdefault("ipConfigurations", [])
    if not configs:
        if not creating:
            raise CliError("this network interface has no ipConfiguration to change")
        if "--subnet" not in given:
            raise CliError("a network interface needs a subnet: --subnet NAME --vnet-name VNET (or --subnet ID)")
        configs.append({"name": "ipconfig1", "properties": {"primary": True}})
    config = next((c for c in configs if (c.get("properties") or {}).get("primary")), configs[0])["properties"]
    if "--subnet" in given:
        subnet = given["--subnet"]
        if subnet.lower().startswith("/subscriptions/"):
            config["subnet"] = {"id": subnet}
        elif "--vnet-name" not in given:
            raise CliError("--subnet NAME needs --vnet-name (or give the subnet's full id)")
        else:
            config["subnet"] = {"id": where.id("virtualNetworks", given["--vnet-name"], "subnets", subnet)}
    elif "--vnet-name" in given:
        raise CliError("--vnet-name goes with --subnet NAME")
    if "--private-ip-address" in given:
        address = given["--private-ip-address"]
        config["privateIPAllocationMethod"] = "Static" if address else "Dynamic"
        if address:
            config["privateIPAddress"] = address
        else:
            config.pop("privateIPAddress", None)
    if "--public-ip-address" in given:
        value = given["--public-ip-address"]
        reference(config, "publicIPAddress", value and where.id("publicIPAddresses", value))
    if "--nsg" in given:
        reference(p, "networkSecurityGroup", given["--nsg"] and where.id("networkSecurityGroups", given["--nsg"]))


def _primary(row: dict[str, Any]) -> dict[str, Any]:
    configs = props("ipConfigurations")(row) or []
    chosen = next((c for c in configs if (c.get("properties") or {}).get("primary")), configs[0] if configs else {})
    return dict(chosen.get("properties") or {})


NIC = Noun(
    "nic",
    "network interface",
    "networkInterfaces",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=5),
        Column("private IP", lambda r: _primary(r).get("privateIPAddress")),
        Column("public IP", lambda r: ref(_primary(r).get("publicIPAddress")), drop=2),
        Column("subnet", lambda r: ref(_primary(r).get("subnet")), drop=1),
        Column("nsg", lambda r: ref(props("networkSecurityGroup")(r)), drop=3),
        Column("mac", props("macAddress"), drop=6),
        Column("state", props("provisioningState"), drop=4),
    ),
    (
        Opt("--vnet-name", "The virtual network of --subnet."),
        Opt("--subnet", "Subnet: NAME (with --vnet-name) or id."),
        Opt("--private-ip-address", "A static private address ('' for Dynamic, the default: the lowest free)."),
        Opt("--public-ip-address", "Public IP: name (same group) or id; '' detaches it."),
        Opt("--nsg", "Network security group of the NIC: name (same group) or id; '' removes it."),
    ),
    _nic,
    help="Network interfaces (the id `nic show` prints is what `lab vm create --nic` takes).",
    example="isthmus nic create nic1 -g lab --vnet-name net1 --subnet web --public-ip-address ip1",
)


# --- network security groups and rules ------------------------------------------------------------------------

NSG = Noun(
    "nsg",
    "network security group",
    "networkSecurityGroups",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=3),
        Column("rules", lambda r: len(props("securityRules")(r) or [])),
        Column("subnets", lambda r: len(props("subnets")(r) or []), drop=1),
        Column("nics", lambda r: len(props("networkInterfaces")(r) or []), drop=2),
        Column("state", props("provisioningState"), drop=4),
    ),
    verbs=("create", "list", "update", "delete"),
    help="Network security groups (`nsg rule` for their rules).",
    example="isthmus nsg create web-nsg -g lab",
)

RULE_DEFAULTS = {  # az network nsg rule create's
    "--direction": "Inbound",
    "--access": "Allow",
    "--protocol": "*",
    "--source-address-prefixes": ["*"],
    "--source-port-ranges": ["*"],
    "--destination-address-prefixes": ["*"],
    "--destination-port-ranges": ["80"],
}
RULE_FIELDS = {
    "--source-address-prefixes": ("sourceAddressPrefix", "sourceAddressPrefixes"),
    "--source-port-ranges": ("sourcePortRange", "sourcePortRanges"),
    "--destination-address-prefixes": ("destinationAddressPrefix", "destinationAddressPrefixes"),
    "--destination-port-ranges": ("destinationPortRange", "destinationPortRanges"),
}


def _rule(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if creating:
        if "--priority" not in given:
            raise CliError("a rule needs --priority (100-4096, unique per direction)")
        given = RULE_DEFAULTS | given
    for flag, choices, key in (
        ("--direction", DIRECTIONS, "direction"),
        ("--access", ACCESS, "access"),
        ("--protocol", PROTOCOLS, "protocol"),
    ):
        if flag in given:
            p[key] = _choice(given[flag], choices, flag)
    if "--priority" in given:
        p["priority"] = given["--priority"]
    if "--description" in given:
        p["description"] = given["--description"]
    for flag, (single, plural) in RULE_FIELDS.items():
        if flag in given:
            one_or_many(p, single, plural, given[flag])


RULE_COLUMNS = (
    Column("prio", props("priority")),
    Column("name", lambda r: r["name"]),
    Column("direction", props("direction")),
    Column("access", props("access")),
    Column("proto", props("protocol")),
    Column("source", either("sourceAddressPrefix", "sourceAddressPrefixes"), drop=2),
    Column("src ports", either("sourcePortRange", "sourcePortRanges"), drop=4),
    Column("destination", either("destinationAddressPrefix", "destinationAddressPrefixes"), drop=3),
    Column("dst ports", either("destinationPortRange", "destinationPortRanges"), drop=1),
)

RULE = Noun(
    "rule",
    "security rule",
    "securityRules",
    RULE_COLUMNS,
    (
        Opt("--priority", "100-4096, unique per direction; lower goes first.", type=int),
        Opt("--direction", "Inbound (default) or Outbound, any case."),
        Opt("--access", "Allow (default) or Deny."),
        Opt("--protocol", "Tcp, Udp, Icmp, Esp, Ah or * (default)."),
        Opt(
            "--source-address-prefixes",
            "Prefixes, addresses or tags (Internet, VirtualNetwork…); default *.",
            many=True,
        ),
        Opt("--source-port-ranges", "Ports or ranges (8000-8080); default *.", many=True),
        Opt("--destination-address-prefixes", "Prefixes, addresses or tags; default *.", many=True),
        Opt("--destination-port-ranges", "Ports or ranges; default 80.", many=True),
        Opt("--description", "Free text."),
    ),
    _rule,
    parent=Parent("--nsg-name", "networkSecurityGroups", "securityRules", "network security group"),
    located=False,
    help="Security rules of a network security group.",
    example="isthmus nsg rule create ssh -g lab --nsg-name web-nsg --priority 100 --protocol tcp "
    "--destination-port-ranges 22 --source-address-prefixes Internet",
)


# --- public IP addresses --------------------------------------------------------------------------------------


def _publicip(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if "--allocation-method" in given:
        method = {"static": "Static", "dynamic": "Dynamic"}
        p["publicIPAllocationMethod"] = _choice(given["--allocation-method"], method, "--allocation-method")
    if "--sku" in given:
        body["sku"] = {"name": _choice(given["--sku"], {"basic": "Basic", "standard": "Standard"}, "--sku")}
    if "--version" in given:
        p["publicIPAddressVersion"] = _choice(given["--version"], {"ipv4": "IPv4", "ipv6": "IPv6"}, "--version")


PUBLICIP = Noun(
    "publicip",
    "public IP address",
    "publicIPAddresses",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=5),
        Column("address", props("ipAddress")),
        Column("allocation", props("publicIPAllocationMethod"), drop=3),
        Column("sku", lambda r: (r.get("sku") or {}).get("name"), drop=4),
        Column("attached to", lambda r: ref(props("ipConfiguration")(r))),
        Column("state", props("provisioningState"), drop=6),
    ),
    (
        Opt("--allocation-method", "Static (an address from creation) or Dynamic (only while attached)."),
        Opt("--sku", "Basic (default) or Standard (always Static)."),
        Opt("--version", "IPv4 (default) or IPv6."),
    ),
    _publicip,
    help="Public IP addresses (from the operator's public IP pools).",
    example="isthmus publicip create ip1 -g lab --allocation-method Static",
)


# --- gateways and connections -----------------------------------------------------------------------------------


def _vnet_gateway(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if creating:
        if "--vnet" not in given or "--public-ip-address" not in given:
            raise CliError("a VPN gateway needs --vnet (with a subnet named GatewaySubnet) and --public-ip-address")
        p.update(gatewayType="Vpn", vpnType="RouteBased", sku={"name": given.get("--sku", "VpnGw1")})
        p["ipConfigurations"] = [{"name": "default", "properties": {}}]
    config = p["ipConfigurations"][0].setdefault("properties", {})
    if "--vnet" in given:
        vnet = where.id("virtualNetworks", given["--vnet"])
        config["subnet"] = {"id": f"{vnet}/subnets/GatewaySubnet"}
    if "--public-ip-address" in given:
        config["publicIPAddress"] = {"id": where.id("publicIPAddresses", given["--public-ip-address"])}
    if "--sku" in given:
        p["sku"] = {"name": given["--sku"]}
    if "--asn" in given:
        p["enableBgp"] = True
        p["bgpSettings"] = {**(p.get("bgpSettings") or {}), "asn": given["--asn"]}


def _gateway_vnet(row: dict[str, Any]) -> Any:
    configs = props("ipConfigurations")(row) or [{}]
    subnet = ref((configs[0].get("properties") or {}).get("subnet"))
    return subnet.rsplit("/subnets/", 1)[0] if isinstance(subnet, str) else None


VNET_GATEWAY = Noun(
    "vnet-gateway",
    "virtual network gateway",
    "virtualNetworkGateways",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=4),
        Column("vnet", _gateway_vnet, drop=1),
        Column("sku", lambda r: (props("sku")(r) or {}).get("name")),
        Column(
            "public IP",
            lambda r: ref(((props("ipConfigurations")(r) or [{}])[0].get("properties") or {}).get("publicIPAddress")),
            drop=2,
        ),
        Column("asn", lambda r: (props("bgpSettings")(r) or {}).get("asn"), drop=3),
        Column("state", props("provisioningState"), drop=5),
    ),
    (
        Opt("--vnet", "Virtual network (name or id) holding a subnet named GatewaySubnet."),
        Opt("--public-ip-address", "Public IP (name or id) the gateway answers on."),
        Opt("--sku", "Basic, Standard, HighPerformance, VpnGw1 (default), VpnGw2 or VpnGw3: picks the pool tier."),
        Opt("--asn", "BGP: this gateway's ASN (turns BGP on).", type=int),
    ),
    _vnet_gateway,
    help="Virtual network gateways (VPN, placed on the operator's gateway pools).",
    example="isthmus vnet-gateway create gw1 -g lab --vnet net1 --public-ip-address gw-ip",
)


def _local_gateway(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if "--gateway-ip-address" in given:
        p["gatewayIpAddress"] = given["--gateway-ip-address"]
    if "--local-address-prefixes" in given:
        p["localNetworkAddressSpace"] = {"addressPrefixes": given["--local-address-prefixes"]}
    if "--asn" in given or "--bgp-peering-address" in given:
        bgp = dict(p.get("bgpSettings") or {})
        bgp.update({"asn": given["--asn"]} if "--asn" in given else {})
        bgp.update({"bgpPeeringAddress": given["--bgp-peering-address"]} if "--bgp-peering-address" in given else {})
        p["bgpSettings"] = bgp


LOCAL_GATEWAY = Noun(
    "local-gateway",
    "local network gateway",
    "localNetworkGateways",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=4),
        Column("gateway IP", props("gatewayIpAddress")),
        Column("prefixes", lambda r: (props("localNetworkAddressSpace")(r) or {}).get("addressPrefixes"), drop=1),
        Column("asn", lambda r: (props("bgpSettings")(r) or {}).get("asn"), drop=2),
        Column("state", props("provisioningState"), drop=3),
    ),
    (
        Opt("--gateway-ip-address", "The on-premises VPN device's public address."),
        Opt("--local-address-prefixes", "The on-premises prefixes.", many=True),
        Opt("--asn", "BGP: the device's ASN.", type=int),
        Opt("--bgp-peering-address", "BGP: the device's peering address."),
    ),
    _local_gateway,
    help="Local network gateways (the on-premises side of a connection).",
    example="isthmus local-gateway create onprem -g lab --gateway-ip-address 198.51.100.1 "
    "--local-address-prefixes 192.0.2.0/24",
)

CONNECTION_TYPES = {t.lower(): t for t in ("IPsec", "GRE", "L3")}


def _bytes(count: Any) -> str:
    """1234567 -> '1.2 MB' (the table's width matters more than the last byte)."""
    if not isinstance(count, int):
        return ""
    if count < 1000:
        return f"{count} B"
    size, units = count / 1000, ["kB", "MB", "GB"]
    while size >= 1000 and len(units) > 1:
        size, units = size / 1000, units[1:]
    return f"{size:.1f} {units[0]}"


def _carrying_nodes(s: Settings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each connection with the node carrying it, from the operator's placement; unchanged for a token that
    may not read it (a tenant's: the fabric is not its business)."""
    try:
        placed = client.request(s, "GET", "/admin/placement")["placed"]
    except CliError:
        return rows
    node_of = {p["virtualNetworkGateway"].lower(): p["node"] for p in placed}
    return [{**row, "node": node_of.get(str(ref(props("virtualNetworkGateway1")(row)) or "").lower())}
            for row in rows]  # fmt: skip


def _connection(where: Where, body: dict[str, Any], given: dict[str, Any], creating: bool) -> None:
    p = body.setdefault("properties", {})
    if creating:
        p["connectionType"] = _choice(given.get("--connection-type", "IPsec"), CONNECTION_TYPES, "--connection-type")
    elif "--connection-type" in given:
        raise CliError("the type of a connection cannot change: delete it and create it again")
    if "--vnet-gateway" in given:
        p["virtualNetworkGateway1"] = {"id": where.id("virtualNetworkGateways", given["--vnet-gateway"])}
    if "--local-gateway" in given:
        p["localNetworkGateway2"] = {"id": where.id("localNetworkGateways", given["--local-gateway"])}
    if "--shared-key" in given:
        p["sharedKey"] = given["--shared-key"]
    if "--routing-weight" in given:
        p["routingWeight"] = given["--routing-weight"]


CONNECTION = Noun(
    "connection",
    "connection",
    "connections",
    (
        Column("name", lambda r: r["name"]),
        Column("group", group_of, drop=5),
        Column("type", props("connectionType"), drop=3),
        Column("vnet gateway", lambda r: ref(props("virtualNetworkGateway1")(r)), drop=1),
        Column("local gateway", lambda r: ref(props("localNetworkGateway2")(r)), drop=2),
        Column("status", props("connectionStatus")),
        Column("in", lambda r: _bytes(props("ingressBytesTransferred")(r)), drop=6),
        Column("out", lambda r: _bytes(props("egressBytesTransferred")(r)), drop=6),
        Column("node", lambda r: r.get("node"), drop=7),
        Column("reason", props("connectionStatusReason"), drop=8),
        Column("state", props("provisioningState"), drop=4),
    ),
    (
        Opt("--vnet-gateway", "The virtual network gateway (name or id)."),
        Opt("--local-gateway", "The local network gateway (name or id)."),
        Opt("--shared-key", "IPsec pre-shared key (write-only: never printed back)."),
        Opt("--connection-type", "IPsec (default), GRE or L3 (set greSettings / l3ForwardingSettings with --set)."),
        Opt("--routing-weight", "Routing weight.", type=int),
    ),
    _connection,
    enrich=lambda s, rows: _carrying_nodes(s, rows),
    help="Connections of a virtual network gateway to a local network gateway (status, bytes, the gateway "
    "node carrying it when the token may read the placement, why it is not connected).",
    example="isthmus connection create to-onprem -g lab --vnet-gateway gw1 --local-gateway onprem --shared-key …",
)

TENANT_NOUNS = (VNET, SUBNET, NIC, NSG, PUBLICIP, VNET_GATEWAY, LOCAL_GATEWAY, CONNECTION)


def app_for(noun: Noun) -> typer.Typer:
    app = typer.Typer(help=noun.help, no_args_is_help=True)
    add_commands(app, noun)
    return app


vnet_app = app_for(VNET)
subnet_app = app_for(SUBNET)
nic_app = app_for(NIC)
nsg_app = app_for(NSG)
publicip_app = app_for(PUBLICIP)
vnet_gateway_app = app_for(VNET_GATEWAY)
local_gateway_app = app_for(LOCAL_GATEWAY)
connection_app = app_for(CONNECTION)
nsg_app.add_typer(app_for(RULE), name="rule")


# --- nsg show (its rules) and nsg verify ----------------------------------------------------------------------


@nsg_app.command("show")
def nsg_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Its name, or its full id."),
    group: str | None = GROUP.default,
    subscription: str | None = SUB.default,
    defaults: bool = typer.Option(False, "--defaults", help="Include the six default rules."),
) -> None:
    """Show a network security group: its rules in the order they apply (its full id last)."""
    s = settings(ctx)
    where, name, _ = locate(s, NSG, name, group, subscription, None)
    body = get(s, NSG.path(where, name, None), API)
    rules = list(body["properties"]["securityRules"])
    if defaults:
        rules += body["properties"]["defaultSecurityRules"]
    rules.sort(key=lambda r: (r["properties"]["direction"], r["properties"]["priority"]))
    client.show(s, rules, RULE_COLUMNS, f"security rules of {name}", raw=body)
    if s.output == "table":
        print(f"id: {body['id']}")


@nsg_app.command("verify")
def nsg_verify(
    ctx: typer.Context,
    nic: str = typer.Option(..., help="The network interface: NAME (with -g) or its id."),
    group: str | None = GROUP.default,
    subscription: str | None = SUB.default,
    direction: str = typer.Option("Inbound", help="Inbound or Outbound (any case), seen from the NIC."),
    protocol: str = typer.Option("TCP", help="TCP, UDP or ICMP (any case)."),
    local: str = typer.Option(..., help="The NIC's side: PRIVATE-ADDRESS:PORT (the port is optional for ICMP)."),
    remote: str = typer.Option(..., help="The other side: ADDRESS:PORT (the port is optional for ICMP)."),
) -> None:
    """IP flow verify: Allow or Deny, and the rule that decides, for one flow at a NIC (no packet is sent)."""
    s = settings(ctx)
    where, name, _ = locate(s, NIC, nic, group, subscription, None)
    nic_id = NIC.path(where, name, None)
    proto = _choice(protocol, {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}, "--protocol")
    ported = proto != "ICMP"
    (local_ip, local_port), (remote_ip, remote_port) = (
        _endpoint(local, "--local", ported),
        _endpoint(remote, "--remote", ported),
    )
    path = (
        f"/subscriptions/{where.subscription}/resourceGroups/{where.group}/providers/{NETWORK}"
        "/networkWatchers/NetworkWatcher_local/ipFlowVerify"
    )
    question = {"targetResourceId": nic_id, "direction": _choice(direction, DIRECTIONS, "--direction"),
                "protocol": proto, "localPort": local_port, "remotePort": remote_port,
                "localIPAddress": local_ip, "remoteIPAddress": remote_ip}  # fmt: skip
    answer = post(s, path, question, {"api-version": NETWORK_API})
    columns = [Column("access", lambda r: r["access"]), Column("rule", lambda r: r["ruleName"]),
               Column("network security group", lambda r: r.get("networkSecurityGroup"))]  # fmt: skip
    client.show(s, [answer], columns, "IP flow verify", raw=answer)


def _endpoint(text: str, option: str, ported: bool) -> tuple[str, str]:
    """ADDRESS:PORT ([v6]:PORT); a bare address (port 0) where the protocol has no ports."""
    bare = text.strip("[]")
    if not ported and _is_address(bare):
        return bare, "0"
    address, _, port = text.rpartition(":")
    if not address or not port.isdigit() or not _is_address(address.strip("[]")):
        raise CliError(f"{option} is ADDRESS:PORT (e.g. 100.64.0.4:22, [2001:db8::4]:22), not {text!r}")
    return address.strip("[]"), port


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
