"""Address checks and allocation shared by the kinds: CIDRs as Azure reads them, private and public IPs."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from itertools import chain
from typing import Any

from isthmus.api.errors import ArmError, bad_request
from isthmus.store.repo import Tx

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
PUBLIC = "public"
POOL_TYPE = "admin/publicIpPools"


def cidr(text: Any, target: str) -> Network:
    """A prefix in CIDR notation; host bits set is Azure's InvalidCIDRNotation, naming the right prefix."""
    if not isinstance(text, str) or "/" not in text:
        raise bad_request("InvalidCIDRNotation", f"The address prefix '{text}' is not in CIDR notation.", target)
    try:
        return ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ip_network(text, strict=False)
    except ValueError:
        raise bad_request("InvalidCIDRNotation", f"The address prefix '{text}' is not valid.", target) from None
    raise bad_request(
        "InvalidCIDRNotation",
        f"The address prefix {text} has an invalid CIDR notation. For the given prefix length, "
        f"the address prefix should be {loose}.",
        target,
    )


def address(text: Any, target: str, code: str = "InvalidIPAddress") -> Address:
    try:
        return ip_address(str(text))
    except ValueError:
        raise bad_request(code, f"'{text}' is not a valid IP address.", target) from None


def reserved_in_subnet(subnet: Network) -> set[str]:
    """Azure reserves the network address, the next three, and (IPv4) the broadcast address."""
    base = int(subnet.network_address)
    reserved = {str(ip_address(base + offset)) for offset in range(min(4, subnet.num_addresses))}
    if subnet.version == 4:
        reserved.add(str(subnet.broadcast_address))
    return reserved


def allocate_private(tx: Tx, space: str, subnet: Network, owner: str, wanted: str | None, target: str) -> str:
    """Claim `wanted` (Static) or the lowest free address (Dynamic) of `subnet` for `owner`."""
    if wanted is not None:
        addr = address(wanted, target)
        if addr not in subnet:
            raise bad_request(
                "PrivateIPAddressNotInSubnet",
                f"Private static IP address {wanted} does not belong to the range of subnet prefix {subnet}.",
                target,
            )
        if str(addr) in reserved_in_subnet(subnet):
            raise bad_request(
                "PrivateIPAddressInReservedRange",
                f"Private static IP address {wanted} falls within reserved IP range of subnet prefix {subnet}.",
                target,
            )
        holder = tx.owner_of(space, str(addr))
        if holder is not None and holder != owner:
            raise bad_request("PrivateIPAddressInUse", f"IP address {wanted} is in use by {holder}.", target)
        if holder is None:
            tx.claim(space, str(addr), owner)
        return str(addr)
    free = tx.first_free(space, subnet, reserved_in_subnet(subnet))
    if free is None:
        raise bad_request("SubnetIsFull", f"Subnet with address prefix {subnet} has no free addresses.", target)
    tx.claim(space, free, owner)
    return free


# Next offset to try per public pool: allocation stays O(1) as pools fill. Only a hint; the store's
# unique key on (space, address) is what makes an address belong to one owner.
_pool_cursor: dict[str, int] = {}


def pool_networks(tx: Tx) -> list[tuple[str, Network]]:
    pools = []
    for doc in tx.list_docs("admin", POOL_TYPE):
        for text in doc.body.get("properties", {}).get("addressPrefixes", []):
            pools.append((doc.name, ip_network(text)))
    return pools


def allocate_public(tx: Tx, owner: str, version: int, target: str) -> str:
    """The public address `owner` holds, taking the next free one from the operator's pools if none."""
    held = [a for a, space in tx.addresses_of(owner).items() if space == PUBLIC]
    if held:
        return held[0]
    pools = [(pool, network) for pool, network in pool_networks(tx) if network.version == version]
    if not pools:
        raise ArmError(
            409,
            "NoPublicIPAddressPool",
            f"The operator has no public IP pool with IPv{version} addresses: an operator must create one "
            f"(`isthmus publicip-pool create NAME --address-prefixes PREFIX`).",
            target,
        )
    for pool, network in pools:
        found = _next_free(tx, pool, network)
        if found is not None:
            tx.claim(PUBLIC, found, owner, pool)
            return found
    raise ArmError(
        409,
        "PublicIPAddressPoolExhausted",
        f"No IPv{version} address is free in the operator's public IP pools.",
        target,
    )


def claim_shared_public(tx: Tx, wanted: str | None, owner_of: Callable[[str], str], target: str) -> str:
    """A public address several holders share (gateway pools' shared VIP), held by `owner_of(address)`:
    `wanted` (it must lie in a public IP pool and be free or already shared) or the next free one."""
    pools = pool_networks(tx)
    if wanted is None:
        for pool, network in pools:
            found = _next_free(tx, pool, network) if network.version == 4 else None
            if found is not None:
                tx.claim(PUBLIC, found, owner_of(found), pool)
                return found
        raise ArmError(409, "PublicIPAddressPoolExhausted", "No IPv4 address is free in the public IP pools.", target)
    addr = address(wanted, target)
    home = next((p for p, network in pools if addr in network), None)
    if home is None:
        raise bad_request("PublicIPAddressNotInPool", f"{addr} is in none of the operator's public IP pools.", target)
    holder = tx.owner_of(PUBLIC, str(addr))
    if holder is None:
        tx.claim(PUBLIC, str(addr), owner_of(str(addr)), home)
    elif holder != owner_of(str(addr)):
        raise ArmError(409, "PublicIPAddressInUse", f"{addr} is held by {holder}.", target)
    return str(addr)


def _next_free(tx: Tx, pool: str, network: Network) -> str | None:
    skip_ends = network.version == 4 and network.prefixlen < 31
    first = int(network.network_address)
    usable = range(1, network.num_addresses - 1) if skip_ends else range(network.num_addresses)
    if not usable:
        return None
    key = f"{pool}:{network}"
    start = _pool_cursor.get(key, usable.start)
    for tries, offset in enumerate(chain(range(start, usable.stop), range(usable.start, start))):
        candidate = str(ip_address(first + offset))
        if tx.owner_of(PUBLIC, candidate) is None:
            _pool_cursor[key] = offset + 1 if offset + 1 < usable.stop else usable.start
            return candidate
        if tries > 4096:  # a crowded region: fall back to one ordered scan of what is taken
            taken = set(tx.allocated(PUBLIC))
            for offset2 in usable:
                candidate = str(ip_address(first + offset2))
                if candidate not in taken:
                    _pool_cursor[key] = offset2 + 1
                    return candidate
            return None
    return None
