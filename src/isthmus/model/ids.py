"""ARM resource ids: parsing, building, normalising (ARM ids compare case-insensitively)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PROVIDER = "Microsoft.Network"
# Azure's rule for most Microsoft.Network names: 1-80 characters, letters, digits, '.', '_', '-',
# starting with a letter or digit and ending with a letter, digit or '_'.
RESOURCE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,78}[A-Za-z0-9_])?$")
GROUP_NAME = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
SUBSCRIPTION_ID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


@dataclass(frozen=True)
class ResourceId:
    subscription: str
    resource_group: str
    collection: str  # e.g. virtualNetworks
    name: str
    child_collection: str | None = None  # e.g. subnets
    child_name: str | None = None

    @property
    def parent(self) -> ResourceId:
        return ResourceId(self.subscription, self.resource_group, self.collection, self.name)

    def child(self, collection: str, name: str) -> ResourceId:
        return ResourceId(self.subscription, self.resource_group, self.collection, self.name, collection, name)

    def __str__(self) -> str:
        text = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/{self.collection}/{self.name}"
        )
        if self.child_collection:
            text += f"/{self.child_collection}/{self.child_name}"
        return text

    @property
    def key(self) -> str:
        """The store's key of the top-level resource this id belongs to."""
        return str(self.parent).lower()


def parse(text: str) -> ResourceId | None:
    """A Microsoft.Network id (top-level or one child level), or None if `text` is not one."""
    parts = text.strip("/").split("/")
    if len(parts) not in (8, 10):
        return None
    if [p.lower() for p in parts[0:6:2]] != ["subscriptions", "resourcegroups", "providers"]:
        return None
    if parts[5].lower() != PROVIDER.lower() or not all(parts):
        return None
    if len(parts) == 8:
        return ResourceId(parts[1], parts[3], parts[6], parts[7])
    return ResourceId(parts[1], parts[3], parts[6], parts[7], parts[8], parts[9])


def group_id(subscription: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}"


def normalize(text: str) -> str:
    return text.rstrip("/").lower()
