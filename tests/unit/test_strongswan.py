"""Pure parts of the gateway's IPsec: Azure's policies as strongSwan proposals, a connection's vici config,
charon's SA listings and log lines read back."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from isthmus.linux import strongswan
from isthmus.model.documents import Connection, IpsecPolicy, TrafficSelector
from isthmus.model.ipsec import DEFAULT_ESP, DEFAULT_IKE, esp_proposal, ike_proposal


def policy(**changes: object) -> IpsecPolicy:
    base = {"sa_life_time_seconds": 3600, "sa_data_size_kilobytes": 102400, "ipsec_encryption": "GCMAES256",
            "ipsec_integrity": "GCMAES256", "ike_encryption": "AES256", "ike_integrity": "SHA384",
            "dh_group": "ECP384", "pfs_group": "ECP384"}  # fmt: skip
    return IpsecPolicy(**{**base, **changes})  # type: ignore[arg-type]


def connection(**changes: object) -> Connection:
    base = {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/connections/c",
            "connection_type": "IPsec", "remote_address": ip_address("198.51.100.20"),
            "remote_prefixes": (ip_network("192.0.2.0/26"),), "remote_bgp": None, "shared_key": "k",
            "ipsec_policies": (), "dpd_timeout_seconds": 45, "connection_mode": "Default", "gre_settings": None,
            "l3_forwarding_settings": None, "enable_bgp": False}  # fmt: skip
    return Connection(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "ike", "esp"),
    [
        ({}, "aes256-sha384-ecp384", "aes256gcm16-ecp384"),
        ({"ike_encryption": "GCMAES256", "ike_integrity": "GCMAES256"}, "aes256gcm16-prfsha384-ecp384",
         "aes256gcm16-ecp384"),
        ({"ipsec_encryption": "AES128", "ipsec_integrity": "SHA1", "pfs_group": "None", "dh_group": "DHGroup14"},
         "aes256-sha384-modp2048", "aes128-sha1"),
        ({"ipsec_encryption": "None", "ipsec_integrity": "SHA256", "pfs_group": "PFS24", "dh_group": "DHGroup24"},
         "aes256-sha384-modp2048s256", "null-sha256-modp2048s256"),
        ({"pfs_group": "PFSMM"}, "aes256-sha384-ecp384", "aes256gcm16"),
    ],
)  # fmt: skip
def test_an_azure_policy_is_one_ike_and_one_esp_proposal(changes: dict[str, str], ike: str, esp: str) -> None:
    chosen = policy(**changes)
    assert (ike_proposal(chosen), esp_proposal(chosen)) == (ike, esp)


def test_dh_group_none_cannot_key_ike() -> None:
    with pytest.raises(ValueError, match="dhGroup None"):
        ike_proposal(policy(dh_group="None"))


def test_the_vici_config_of_a_route_based_connection() -> None:
    [(name, conn)] = strongswan.conn_config(connection(), "203.0.113.7", ["100.64.0.0/16"]).items()
    assert name == strongswan.conn_name(connection().id) and "/" not in name
    assert conn["local_addrs"] == ["203.0.113.7"] and conn["remote_addrs"] == ["198.51.100.20"]
    assert conn["local"] == {"auth": "psk", "id": "203.0.113.7"}  # the gateway's identity is its VIP
    assert conn["proposals"] == list(DEFAULT_IKE) and conn["dpd_delay"] == "15s"
    child = conn["children"][name]
    assert (child["local_ts"], child["remote_ts"]) == (["100.64.0.0/16"], ["192.0.2.0/26"])
    assert child["esp_proposals"] == list(DEFAULT_ESP) and child["start_action"] == "none"  # the agent initiates
    custom = strongswan.conn_config(connection(ipsec_policies=(policy(),)), "203.0.113.7", ["100.64.0.0/16"])
    [custom_conn] = custom.values()
    assert custom_conn["proposals"] == ["aes256-sha384-ecp384"]
    assert custom_conn["children"][name]["rekey_time"] == "3600s"
    assert custom_conn["children"][name]["rekey_bytes"] == str(102400 * 1024)


def test_policy_based_traffic_selectors_replace_the_prefixes() -> None:
    selectors = (TrafficSelector((ip_network("100.64.1.0/24"),), (ip_network("192.0.2.0/28"),)),
                 TrafficSelector((ip_network("100.64.2.0/24"),), (ip_network("192.0.2.16/28"),)))  # fmt: skip
    chosen = connection(use_policy_based_traffic_selectors=True, traffic_selector_policies=selectors)
    [conn] = strongswan.conn_config(chosen, "203.0.113.7", ["100.64.0.0/16"]).values()
    [child] = conn["children"].values()
    assert child["local_ts"] == ["100.64.1.0/24", "100.64.2.0/24"]
    assert child["remote_ts"] == ["192.0.2.0/28", "192.0.2.16/28"]


def test_responder_only_connections_are_not_initiated() -> None:
    assert strongswan.initiates(connection()) and not strongswan.initiates(connection(connection_mode="ResponderOnly"))


def test_sa_listings_give_the_best_tunnel_per_connection() -> None:
    child = {b"state": b"INSTALLED", b"local-ts": [b"100.64.0.0/16"], b"remote-ts": [b"192.0.2.0/26"],
             b"bytes-in": b"840", b"bytes-out": b"1260", b"encr-alg": b"AES_GCM_16"}  # fmt: skip
    listing = [
        {"c1": {"state": b"CONNECTING", "child-sas": {}}},
        {"c1": {"state": b"ESTABLISHED", "established": b"12", "local-host": b"203.0.113.7",
                "child-sas": {"c1-1": {k.decode(): v for k, v in child.items()}}}},
        {"c2": {"state": b"CONNECTING"}},
    ]  # fmt: skip
    found = strongswan.tunnels(listing)
    assert found["c1"].connected and (found["c1"].bytes_in, found["c1"].bytes_out) == (840, 1260)
    assert found["c1"].established_s == 12 and found["c1"].summary["localEndpoint"] == "203.0.113.7"
    assert found["c1"].summary["childSas"][0]["encryption"] == "AES_GCM_16"
    assert not found["c2"].connected and found["c2"].state == "CONNECTING"


def test_reasons_are_read_from_charons_log() -> None:
    lines = [
        "1796 12[IKE] <c1|3> received AUTHENTICATION_FAILED notify error",
        "1797 12[IKE] <c2|4> received NO_PROPOSAL_CHOSEN notify error",
        "1798 12[IKE] <c3|5> establishing IKE_SA failed, peer not responding",
        "1799 12[CFG] vici initiate CHILD_SA 'c4'",
    ]
    reasons = strongswan.reason_in(lines)
    assert reasons["c1"].startswith("authentication failed") and reasons["c2"].startswith("no proposal chosen")
    assert reasons["c3"].startswith("peer unreachable") and "c4" not in reasons


def test_a_bgp_connection_is_route_based_any_to_any() -> None:
    """Its site's prefixes are learned, not declared: the selectors must not depend on them."""
    [conn] = strongswan.conn_config(connection(enable_bgp=True), "203.0.113.7", ["100.64.0.0/16"]).values()
    [child] = conn["children"].values()
    assert child["remote_ts"] == ["0.0.0.0/0"] and child["local_ts"] == ["100.64.0.0/16"]
