"""publicIPAddresses: Static ones hold an address from the operator's pools from creation, Dynamic ones
only while an ipConfiguration uses them (Azure's behaviour)."""

from __future__ import annotations

from typing import Any

from isthmus.api.arm.addressing import PUBLIC, allocate_public
from isthmus.api.arm.kind import SUCCEEDED, Kind, Prepared, guid, resolve
from isthmus.api.errors import bad_request
from isthmus.model import arm
from isthmus.model.ids import ResourceId
from isthmus.store.repo import Doc, Tx


class PublicIPAddresses(Kind):
    collection = "publicIPAddresses"
    type = "Microsoft.Network/publicIPAddresses"
    model = arm.PublicIPAddress

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.PublicIPAddressProperties = request.properties
        sku_name = (request.sku.name if request.sku and request.sku.name else "Basic").capitalize()
        if sku_name not in ("Basic", "Standard"):
            raise bad_request("InvalidPublicIpSku", f"SKU '{sku_name}' is not Basic or Standard.", "sku.name")
        method = props.publicIPAllocationMethod or ("Static" if sku_name == "Standard" else "Dynamic")
        if sku_name == "Standard" and method != "Static":
            raise bad_request(
                "StandardSkuPublicIPAddressesCannotBeDynamic",
                "Standard SKU public IP addresses must use the Static allocation method.",
                "properties.publicIPAllocationMethod",
            )
        version = props.publicIPAddressVersion or "IPv4"
        if existing is not None:
            old = existing.body["properties"]
            if old.get("publicIPAddressVersion") != version:
                raise bad_request(
                    "PublicIPAddressVersionCannotBeChanged",
                    "The IP version of a public IP address cannot be changed.",
                    "properties.publicIPAddressVersion",
                )
        properties: dict[str, Any] = {
            "publicIPAllocationMethod": method,
            "publicIPAddressVersion": version,
            "idleTimeoutInMinutes": props.idleTimeoutInMinutes or 4,
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
            "ipTags": props.ipTags or [],
        }
        if props.dnsSettings and props.dnsSettings.domainNameLabel:
            properties["dnsSettings"] = {"domainNameLabel": props.dnsSettings.domainNameLabel}
        in_use = bool(tx.referrers(rid.key, below=False))
        if method == "Static" or in_use:
            allocate_public(tx, rid.key, 6 if version == "IPv6" else 4, "properties.publicIPAllocationMethod")
        else:
            tx.release(rid.key, PUBLIC, below=False)
        return Prepared(properties, extra={"sku": {"name": sku_name, "tier": "Regional"}})

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        body = dict(doc.body)
        props = dict(body["properties"])
        held = [a for a, space in tx.addresses_of(doc.key).items() if space == PUBLIC]
        if held:
            props["ipAddress"] = held[0]
        users = tx.referrers(doc.key, below=False)
        if users:
            props["ipConfiguration"] = {"id": _configuration_id(tx, *users[0][:2])}
        body["properties"] = props
        return body

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        users = tx.referrers(doc.key, below=False)
        if users:
            raise bad_request(
                "PublicIPAddressCannotBeDeleted",
                f"Public IP address {doc.name} can not be deleted since it is still allocated to resource "
                f"{users[0][0]}.",
            )


def _configuration_id(tx: Tx, source: str, path: str) -> str:
    """The id of the ipConfiguration at `path` (ipConfigurations/NAME/publicIPAddress) of resource `source`,
    spelled as its resource spells it (the reference graph holds keys, which are lower-cased)."""
    collection, name = path.split("/")[:2]
    user = tx.get(source)
    for config in user.body["properties"].get(collection, []) if user is not None else []:
        if config.get("name", "").lower() == name.lower():
            return str(config["id"])
    return f"{source}/{collection}/{name}"


def attach(tx: Tx, rid: ResourceId, ref: Any, target: str) -> ResourceId:
    """The public IP `ref` names, taken by `rid` (a NIC or a gateway): it must exist and be free, and a
    Dynamic one gets its address now."""
    pip_id, pip = resolve(tx, rid, ref, target, "publicIPAddresses")
    users = [source for source, _p, _t in tx.referrers(pip_id.key, below=False) if source != rid.key]
    if users:
        raise bad_request("PublicIPAddressInUse", f"Public IP address {pip_id} is already used by {users[0]}.", target)
    version = 6 if pip.body["properties"].get("publicIPAddressVersion") == "IPv6" else 4
    allocate_public(tx, pip_id.key, version, target)
    return pip_id


def release_unused_dynamic(tx: Tx, keys: set[str]) -> None:
    """Dynamic public IPs among `keys` that no ipConfiguration uses any more give their address back."""
    for key, doc in tx.get_many(keys).items():
        dynamic = doc.body["properties"].get("publicIPAllocationMethod") == "Dynamic"
        if dynamic and not tx.referrers(key, below=False):
            tx.release(key, PUBLIC, below=False)
