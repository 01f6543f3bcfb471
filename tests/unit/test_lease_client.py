"""The lease client's list of controller replicas (agents/lease.py): parsing, and moving on from a replica
that does not answer."""

from __future__ import annotations

import pytest

from isthmus.agents.lease import LeaseClient, Unreachable, controller_urls
from isthmus.lab.controller import free_port


def test_controller_urls_are_comma_separated() -> None:
    assert controller_urls("https://a:8443") == ["https://a:8443"]
    assert controller_urls(" https://a:8443, https://b:8444 ,") == ["https://a:8443", "https://b:8444"]
    with pytest.raises(ValueError, match="no controller URL"):
        controller_urls(" , ")


def test_a_renewal_tries_every_replica_once_and_names_each_failure() -> None:
    closed = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]  # nobody listens there
    client = LeaseClient(",".join(closed), "token", None, "gw1", timeout=0.5)
    with pytest.raises(Unreachable) as failed:
        client.renew(None)
    assert all(url in str(failed.value) for url in closed)
    assert client.current == 0  # round the list once: back where it began
