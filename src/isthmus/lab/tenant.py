"""A tenant driving the ARM API, as the demo, the lab tests and the benchmarks do: small PUT helpers that
wait for provisioningState like an ARM client would."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from isthmus.lab.fabric import LabState
from isthmus.store import tokens

API = {"api-version": "2026-03-01"}


class TenantError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
        self.response = response


def tenant_token(state: LabState, subscription: str) -> str:
    return tokens.create_in(state.db, "subscription", subscription)


@dataclass
class Tenant:
    state: LabState
    subscription: str
    group: str = "rg"
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        token = tenant_token(self.state, self.subscription)
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=self.state.controller, headers=headers, verify=self.state.ca, timeout=30.0)
        group = f"/subscriptions/{self.subscription}/resourcegroups/{self.group}"
        self.put_raw(group, {"location": "local"}, api="2024-11-01")

    @property
    def base(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/Microsoft.Network"

    def id(self, path: str) -> str:
        return f"{self.base}/{path}"

    def put_raw(self, path: str, body: dict[str, Any], api: str = API["api-version"]) -> dict[str, Any]:
        response = self.http.put(path, params={"api-version": api}, json=body)
        if response.status_code >= 300:
            raise TenantError(response)
        result: dict[str, Any] = response.json()
        return result

    def put(self, path: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
        top_level = path.count("/") == 1  # children (subnets, securityRules) have no location
        body = {**({"location": "local"} if top_level else {}), "properties": properties, **extra}
        return self.put_raw(self.id(path), body)

    def get(self, path: str) -> dict[str, Any]:
        response = self.http.get(self.id(path), params=API)
        if response.status_code >= 300:
            raise TenantError(response)
        result: dict[str, Any] = response.json()
        return result

    def delete(self, path: str) -> None:
        response = self.http.delete(self.id(path), params=API)
        if response.status_code >= 300:
            raise TenantError(response)

    def wait_succeeded(self, path: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until provisioningState is Succeeded (every live node carrying it has applied it)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.get(path)
            state = doc["properties"].get("provisioningState")
            if state == "Succeeded" or time.monotonic() > deadline:
                return doc
            time.sleep(0.02)

    # --- the resources a tenant of the lab uses -------------------------------------------------------

    def vnet(self, name: str, space: str, subnets: dict[str, str], nsg: str | None = None) -> dict[str, Any]:
        subnet_list = [
            {"name": sub, "properties": {"addressPrefix": prefix,
                                         **({"networkSecurityGroup": {"id": self.id(f"networkSecurityGroups/{nsg}")}}
                                            if nsg and sub != "GatewaySubnet" else {})}}
            for sub, prefix in subnets.items()
        ]  # fmt: skip
        return self.put(
            f"virtualNetworks/{name}", {"addressSpace": {"addressPrefixes": [space]}, "subnets": subnet_list}
        )

    def nsg(self, name: str, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return self.put(f"networkSecurityGroups/{name}", {"securityRules": rules or []})

    def security_rule(self, nsg: str, entry: dict[str, Any]) -> dict[str, Any]:
        return self.put(f"networkSecurityGroups/{nsg}/securityRules/{entry['name']}", entry["properties"])

    def public_ip(self, name: str) -> str:
        doc = self.put(f"publicIPAddresses/{name}", {"publicIPAllocationMethod": "Static"}, sku={"name": "Standard"})
        return str(doc["properties"]["ipAddress"])

    def nic(
        self,
        name: str,
        vnet: str,
        subnet: str,
        *,
        public_ip: str | None = None,
        nsg: str | None = None,
        address: str | None = None,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {"subnet": {"id": self.id(f"virtualNetworks/{vnet}/subnets/{subnet}")}}
        if address:
            config.update(privateIPAllocationMethod="Static", privateIPAddress=address)
        if public_ip:
            config["publicIPAddress"] = {"id": self.id(f"publicIPAddresses/{public_ip}")}
        properties: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
        if nsg:
            properties["networkSecurityGroup"] = {"id": self.id(f"networkSecurityGroups/{nsg}")}
        return self.put(f"networkInterfaces/{name}", properties)

    def vpn_gateway(self, name: str, vnet: str, public_ip: str, sku: str = "Standard",
                    bgp_asn: int | None = None) -> dict[str, Any]:  # fmt: skip
        """A route-based VPN gateway in `vnet`'s GatewaySubnet, owning `public_ip`; with `bgp_asn`, BGP enabled."""
        config = {
            "subnet": {"id": self.id(f"virtualNetworks/{vnet}/subnets/GatewaySubnet")},
            "publicIPAddress": {"id": self.id(f"publicIPAddresses/{public_ip}")},
        }
        properties: dict[str, Any] = {"gatewayType": "Vpn", "vpnType": "RouteBased", "sku": {"name": sku, "tier": sku},
                      "ipConfigurations": [{"name": "default", "properties": config}]}  # fmt: skip
        if bgp_asn is not None:
            properties.update(enableBgp=True, bgpSettings={"asn": bgp_asn})
        return self.put(f"virtualNetworkGateways/{name}", properties)

    def local_gateway(self, name: str, address: str, prefixes: list[str],
                      bgp: tuple[int, str] | None = None) -> dict[str, Any]:  # fmt: skip
        """A local network gateway; `bgp`: the site's (ASN, BGP peering address)."""
        properties: dict[str, Any] = {"gatewayIpAddress": address,
                                      "localNetworkAddressSpace": {"addressPrefixes": prefixes}}  # fmt: skip
        if bgp is not None:
            properties["bgpSettings"] = {"asn": bgp[0], "bgpPeeringAddress": bgp[1]}
        return self.put(f"localNetworkGateways/{name}", properties)

    def connection(self, name: str, gateway: str, local: str, shared_key: str, **extra: Any) -> dict[str, Any]:
        """An IPsec connection from VPN gateway `gateway` to local network gateway `local`."""
        return self._connection(name, "IPsec", gateway, local, sharedKey=shared_key, **extra)

    def gre_connection(self, name: str, gateway: str, local: str, *, enable_bgp: bool = False,
                       **settings: Any) -> dict[str, Any]:  # fmt: skip
        """A GRE connection (isthmus' type) from `gateway` to `local`; `settings` are its greSettings."""
        return self._connection(name, "GRE", gateway, local, greSettings=settings, enableBgp=enable_bgp)

    def l3_connection(self, name: str, gateway: str, local: str, *, enable_bgp: bool = False,
                      **settings: Any) -> dict[str, Any]:  # fmt: skip
        """An L3 forwarding connection (isthmus' type); `settings` are its l3ForwardingSettings."""
        return self._connection(name, "L3", gateway, local, l3ForwardingSettings=settings, enableBgp=enable_bgp)

    def _connection(self, name: str, kind: str, gateway: str, local: str, **properties: Any) -> dict[str, Any]:
        return self.put(f"connections/{name}", {
            "connectionType": kind,
            "virtualNetworkGateway1": {"id": self.id(f"virtualNetworkGateways/{gateway}")},
            "localNetworkGateway2": {"id": self.id(f"localNetworkGateways/{local}")},
            **properties,
        })  # fmt: skip

    def wait_connection(self, name: str, status: str = "Connected", timeout: float = 30.0) -> dict[str, Any]:
        """Poll the connection until its connectionStatus is `status` (the last read when time is up)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.get(f"connections/{name}")
            if doc["properties"].get("connectionStatus") == status or time.monotonic() > deadline:
                return doc
            time.sleep(0.05)


def rule(
    name: str,
    priority: int,
    access: str = "Allow",
    direction: str = "Inbound",
    protocol: str = "*",
    source: str = "*",
    destination: str = "*",
    ports: str = "*",
    source_ports: str = "*",
) -> dict[str, Any]:
    """A securityRules entry (single prefix and port forms; pass lists through the API for the rest)."""
    properties = {
        "priority": priority,
        "access": access,
        "direction": direction,
        "protocol": protocol,
        "sourceAddressPrefix": source,
        "destinationAddressPrefix": destination,
        "sourcePortRange": source_ports,
        "destinationPortRange": ports,
    }
    return {"name": name, "properties": properties}
