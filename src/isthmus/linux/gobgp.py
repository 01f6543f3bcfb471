"""gobgpd, driven over its gRPC API: the BGP speaker behind one small interface.

    speaker.configure(asn, router_id, peers)   # idempotent: the whole session set
    speaker.announce(desired)                   # the whole set of /32 (/128) this node originates

`announce` reads what gobgpd originates (ListPath), adds what is missing and withdraws what is extra in
streamed batches (AddPathStream, 1,000 paths per message, withdrawals flagged is_withdraw): the caller states the
desired set, the speaker works out the difference (MetalLB's Session.Set). Paths carry next hop 0.0.0.0,
which gobgpd replaces with its own address towards each eBGP peer (next-hop self).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage

from isthmus._generated.gobgp import attribute_pb2, gobgp_pb2, gobgp_pb2_grpc

Network = IPv4Network | IPv6Network
BATCH = 1000


@dataclass(frozen=True)
class Peer:
    address: str
    asn: int


def _family(version: int) -> Any:
    afi = gobgp_pb2.Family.AFI_IP if version == 4 else gobgp_pb2.Family.AFI_IP6
    return gobgp_pb2.Family(afi=afi, safi=gobgp_pb2.Family.SAFI_UNICAST)


def _packed(message: Any) -> AnyMessage:
    wrapped = AnyMessage()
    wrapped.Pack(message)
    return wrapped


class GobgpSpeaker:
    def __init__(self, api: str = "127.0.0.1:50051", timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(api)
        self.stub = gobgp_pb2_grpc.GobgpApiStub(self.channel)
        self.timeout = timeout
        self.last: set[Network] | None = None  # what announce() left gobgpd originating

    def close(self) -> None:
        self.channel.close()

    def ready(self) -> bool:
        try:
            self.stub.GetBgp(gobgp_pb2.GetBgpRequest(), timeout=1.0)
            return True
        except grpc.RpcError as error:
            return bool(error.code() == grpc.StatusCode.FAILED_PRECONDITION)  # up, BGP not started yet

    def configure(self, asn: int, router_id: str, peers: Sequence[Peer]) -> int:
        """Start BGP if it is not running (a different identity restarts it) and make the peers exactly
        `peers`; returns the number of changes."""
        changes = 0
        try:
            current = getattr(self.stub.GetBgp(gobgp_pb2.GetBgpRequest(), timeout=self.timeout), "global")
        except grpc.RpcError:
            current = None
        if current is None or current.asn != asn or current.router_id != router_id:
            if current is not None and current.asn:
                self.stub.StopBgp(gobgp_pb2.StopBgpRequest(), timeout=self.timeout)
            self.last = None  # a fresh gobgpd originates nothing
            start = gobgp_pb2.Global(asn=asn, router_id=router_id, listen_port=179)
            self.stub.StartBgp(gobgp_pb2.StartBgpRequest(**{"global": start}), timeout=self.timeout)
            changes += 1
        existing = {
            p.peer.conf.neighbor_address: p.peer.conf.peer_asn
            for p in self.stub.ListPeer(gobgp_pb2.ListPeerRequest(), timeout=self.timeout)
        }
        wanted = {p.address: p.asn for p in peers}
        for address, peer_asn in existing.items():
            if wanted.get(address) != peer_asn:
                self.stub.DeletePeer(gobgp_pb2.DeletePeerRequest(address=address), timeout=self.timeout)
                changes += 1
        for address, peer_asn in wanted.items():
            if existing.get(address) != peer_asn:
                conf = gobgp_pb2.PeerConf(neighbor_address=address, peer_asn=peer_asn)
                self.stub.AddPeer(gobgp_pb2.AddPeerRequest(peer=gobgp_pb2.Peer(conf=conf)), timeout=self.timeout)
                changes += 1
        return changes

    def announced(self) -> set[Network]:
        """What this speaker originates now."""
        out: set[Network] = set()
        for version in (4, 6):
            request = gobgp_pb2.ListPathRequest(table_type=gobgp_pb2.GLOBAL, family=_family(version))
            for response in self.stub.ListPath(request, timeout=self.timeout):
                if any(not path.neighbor_ip or path.neighbor_ip in ("<nil>",) for path in response.destination.paths):
                    out.add(ip_network(response.destination.prefix))
        return out

    def announce(self, desired: Iterable[Network], *, verify: bool = True) -> tuple[int, int]:
        """Make the originated set exactly `desired`; returns (added, withdrawn). With verify=False the
        difference is taken against what this speaker announced last (listing 100,000 paths costs about a
        second); verify=True reads gobgpd's table and so also puts back what changed behind its back."""
        wanted = set(desired)
        current = self.announced() if verify or self.last is None else self.last
        missing = sorted(wanted - current, key=str)
        extra = sorted(current - wanted, key=str)
        if missing:
            self.stub.AddPathStream(self._batches(missing), timeout=max(self.timeout, len(missing) / 2000))
        if extra:  # withdrawals stream too (is_withdraw): one DeletePath per route took 0.5 ms each
            self.stub.AddPathStream(self._batches(extra, withdraw=True), timeout=max(self.timeout, len(extra) / 2000))
        self.last = wanted
        return len(missing), len(extra)

    def _batches(self, networks: Sequence[Network], *, withdraw: bool = False) -> Iterator[Any]:
        for start in range(0, len(networks), BATCH):
            paths = [self._path(n) for n in networks[start : start + BATCH]]
            for path in paths:
                path.is_withdraw = withdraw
            yield gobgp_pb2.AddPathStreamRequest(table_type=gobgp_pb2.GLOBAL, paths=paths)

    @staticmethod
    def _path(network: Network) -> Any:
        nlri = attribute_pb2.IPAddressPrefix(prefix_len=network.prefixlen, prefix=str(network.network_address))
        if network.version == 4:
            hop = _packed(attribute_pb2.NextHopAttribute(next_hop="0.0.0.0"))
            attributes = [_packed(attribute_pb2.OriginAttribute(origin=0)), hop]
        else:
            reach = attribute_pb2.MpReachNLRIAttribute(family=_family(6), next_hops=["::"], nlris=[_packed(nlri)])
            attributes = [_packed(attribute_pb2.OriginAttribute(origin=0)), _packed(reach)]
        return gobgp_pb2.Path(nlri=_packed(nlri), pattrs=attributes, family=_family(network.version))
