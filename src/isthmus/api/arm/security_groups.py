"""networkSecurityGroups, their securityRules and the read-only defaultSecurityRules."""

from __future__ import annotations

from typing import Any

from isthmus.api.arm.kind import SUCCEEDED, Child, Kind, Prepared, child_id, guid, in_use
from isthmus.api.arm.security_rules import validate_security_rules
from isthmus.api.errors import bad_request
from isthmus.model import arm
from isthmus.model.ids import ResourceId
from isthmus.model.security_rules import default_security_rules, normalize_security_rule
from isthmus.store.repo import Doc, Tx

RULE_TYPE = "Microsoft.Network/networkSecurityGroups/securityRules"
DEFAULT_RULE_TYPE = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"


class NetworkSecurityGroups(Kind):
    collection = "networkSecurityGroups"
    type = "Microsoft.Network/networkSecurityGroups"
    model = arm.NetworkSecurityGroup
    children = (
        Child("securityRules", RULE_TYPE, arm.SecurityRule),
        Child("defaultSecurityRules", DEFAULT_RULE_TYPE, arm.SecurityRule, read_only=True),
    )

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        rules = request.properties.securityRules
        error = validate_security_rules(rules, "properties.securityRules")
        if error is not None:
            raise bad_request(error.code, error.message, error.target)
        stored = []
        for rule in rules:
            normal = normalize_security_rule(rule)
            normal["id"] = child_id(rid, "securityRules", normal["name"])
            normal["type"] = RULE_TYPE
            normal["properties"]["provisioningState"] = SUCCEEDED
            stored.append(normal)
        properties = {
            "securityRules": stored,
            "defaultSecurityRules": default_security_rules(str(rid)),
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
        }
        return Prepared(properties)

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        body = dict(doc.body)
        props = dict(body["properties"])
        subnets, nics = [], []
        for source, path, _target in tx.referrers(doc.key, below=False):
            parts = path.split("/")
            if parts[0] == "subnets":
                subnets.append({"id": f"{source}/subnets/{parts[1]}"})
            elif parts[0] == "networkSecurityGroup":
                nics.append({"id": source})
        if subnets:
            props["subnets"] = subnets
        if nics:
            props["networkInterfaces"] = nics
        props["securityRules"] = [{**r, "etag": doc.etag} for r in props.get("securityRules", [])]
        props["defaultSecurityRules"] = [{**r, "etag": doc.etag} for r in props.get("defaultSecurityRules", [])]
        body["properties"] = props
        return body

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        in_use(tx, doc.key, "InUseNetworkSecurityGroupCannotBeDeleted", f"Network security group {doc.name}")
