"""The hand-encoded AddPathStream requests parse back to exactly the object-built ones."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

from hypothesis import given
from hypothesis import strategies as st

from isthmus._generated.gobgp import gobgp_pb2
from isthmus.linux.gobgp import BATCH, Network, encode_batches, path_message

v4 = st.builds(lambda a, n: IPv4Network((a, n), strict=False), st.integers(0, 2**32 - 1), st.integers(0, 32))
v6 = st.builds(lambda a, n: IPv6Network((a, n), strict=False), st.integers(0, 2**128 - 1), st.integers(0, 128))


@given(st.lists(st.one_of(v4, v6), max_size=40), st.booleans())
def test_encoded_equals_object_built(networks: list[Network], withdraw: bool) -> None:
    [encoded] = list(encode_batches(networks, withdraw=withdraw)) or [b""]
    parsed = gobgp_pb2.AddPathStreamRequest.FromString(encoded)
    built = gobgp_pb2.AddPathStreamRequest(paths=[path_message(n, withdraw=withdraw) for n in networks])
    assert parsed == built


def test_batches_of_a_thousand() -> None:
    networks = [ip_network(f"198.18.{i // 256}.{i % 256}/32") for i in range(BATCH * 2 + 5)]
    sizes = [len(gobgp_pb2.AddPathStreamRequest.FromString(b).paths) for b in encode_batches(networks)]
    assert sizes == [BATCH, BATCH, 5]
