"""One public IP for all gateway pools (Windows Server SDN's shared VIP): what tells a tenant's traffic apart.

Every compartment of the pools that share an address answers IKE and GRE on it, so the address no longer
says which compartment a packet is for. The site's address does: IPsec (IKE on UDP 500 and 4500, ESP, ESP in
UDP) is steered by the site's source address alone, GRE by the site's address and the key in the GRE
header (RFC 2890; no key: the site's address alone). compile/ steers the MUXes to the gateway node carrying
a connection, and that node steers into the compartment, with the same keys (`steer_keys`).

Two connections of different compartments on one shared address with the same key cannot be told apart
(`collides`): the API refuses the second (api/arm/shared_address.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from isthmus.model.addresses import Address
from isthmus.model.documents import Connection

IPSEC: Literal["ipsec"] = "ipsec"
GRE: Literal["gre"] = "gre"


@dataclass(frozen=True, order=True)
class SteerKey:
    """The packets of one site that one compartment takes on a shared address."""

    site: Address
    protocol: Literal["ipsec", "gre"]
    gre_key: int | None  # GRE only; None: the site sends no key


def steer_key_of(connection_type: str, site: Address | None, gre_key: int | None) -> SteerKey | None:
    """The key of a connection (its type, the site's address, its GRE key); None for what is not steered
    (L3 forwarding, a connection without a site address)."""
    if site is None:
        return None
    if connection_type == "IPsec":
        return SteerKey(site, IPSEC, None)
    if connection_type == "GRE":
        return SteerKey(site, GRE, gre_key)
    return None


def steer_keys(connections: tuple[Connection, ...]) -> tuple[SteerKey, ...]:
    """The keys a compartment's connections take on its shared address, each once, in order."""
    keys = {
        key
        for c in connections
        if (key := steer_key_of(c.connection_type, c.remote_address, c.gre_settings.key if c.gre_settings else None))
    }
    return tuple(sorted(keys, key=_order))


def collides(a: SteerKey, b: SteerKey) -> bool:
    """Whether packets of `a` and `b` cannot be told apart on one address: the same site and protocol, and
    for GRE the same key or no key on either (a site whose GRE carries no key takes all its GRE)."""
    if a.site != b.site or a.protocol != b.protocol:
        return False
    return a.protocol == IPSEC or a.gre_key == b.gre_key or a.gre_key is None or b.gre_key is None


def _order(key: SteerKey) -> tuple[int, int, str, int]:
    return key.site.version, int(key.site), key.protocol, -1 if key.gre_key is None else key.gre_key
