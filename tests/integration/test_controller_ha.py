"""Controller replicas on one PostgreSQL database: one leader by advisory lock, the others serve; killing the
leader hands leadership on, and renewers move to the new leader by themselves (api/replica.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from isthmus.agents.lease import LeaseClient, Unreachable
from isthmus.lab.controller import RunningController, start_controller, stop
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade

pytestmark = pytest.mark.integration
TAKEOVER_BOUND_S = 10.0  # generous: the bound is a correctness check; bench/failover.py measures takeover


class Replicas:
    def __init__(self, db: str, workdir: Path) -> None:
        self.db, self.workdir = db, workdir
        self.running: dict[str, RunningController] = {}

    def start(self, name: str) -> RunningController:
        self.running[name] = start_controller(self.db, self.workdir, extra=("--name", name), log_name=name)
        return self.running[name]

    def health(self, name: str) -> dict[str, object] | None:
        running = self.running[name]
        try:
            answer: dict[str, object] = httpx.get(f"{running.url}/healthz", verify=str(running.ca), timeout=2).json()
        except httpx.HTTPError:
            return None
        return answer

    def leaders(self) -> list[str]:
        return [name for name in self.running if (self.health(name) or {}).get("leader")]

    def wait_leader(self, among: list[str], timeout: float = TAKEOVER_BOUND_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [name for name in among if (self.health(name) or {}).get("leader")]
            if leaders:
                assert len(leaders) == 1, leaders
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError(f"none of {among} leads after {timeout} s")

    def kill(self, name: str) -> None:
        os.killpg(self.running[name].pid, signal.SIGKILL)
        stop(self.running[name].pid)  # reaps it


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replicas, str]]:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    token = tokens.create(engine, "node", "mux1")  # a node that is no gateway: its lease is held, nothing stored
    engine.dispose()
    group = Replicas(postgres_url, tmp_path)
    try:
        group.start("a")
        group.wait_leader(["a"])
        group.start("b")
        yield group, token
    finally:
        for running in group.running.values():
            stop(running.pid)


def _lease(group: Replicas, token: str, names: list[str]) -> LeaseClient:
    urls = ",".join(group.running[name].url for name in names)
    return LeaseClient(urls, token, str(group.running[names[0]].ca), "mux1")


def test_one_replica_leads_and_followers_send_renewers_on(replicas: tuple[Replicas, str]) -> None:
    group, token = replicas
    assert group.leaders() == ["a"]
    assert group.health("b") == {**(group.health("b") or {}), "replica": "b", "leader": False}
    follower = group.running["b"]
    refused = httpx.post(f"{follower.url}/v1/nodes/mux1/lease", json={"epoch": None, "sequence": 1},
                         headers={"Authorization": f"Bearer {token}"}, verify=str(follower.ca))  # fmt: skip
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "NotLeader"
    client = _lease(group, token, ["b", "a"])  # the follower first: the renewal moves on to the leader
    granted = client.renew(None)
    assert granted.epoch == 0
    assert client.urls[client.current] == group.running["a"].url


def test_leader_killed_hands_leadership_on(replicas: tuple[Replicas, str]) -> None:
    group, token = replicas
    client = _lease(group, token, ["a", "b"])
    client.renew(None)
    killed = time.monotonic()
    group.kill("a")
    assert group.wait_leader(["b"]) == "b"
    took = time.monotonic() - killed
    deadline = time.monotonic() + TAKEOVER_BOUND_S
    while True:
        try:
            client.renew(None)
            break
        except Unreachable:
            assert time.monotonic() < deadline, "no replica took the renewal"
            time.sleep(0.05)
    assert client.urls[client.current] == group.running["b"].url
    operator = tokens_for_operator(group)
    events = httpx.get(f"{group.running['b'].url}/admin/events", headers=operator, verify=str(group.running["b"].ca))
    elected = [e for e in events.json()["value"] if e["kind"] == "leader.elected"]
    assert [e["details"]["replica"] for e in elected][-1] == "b", (took, elected)


def test_a_frozen_leader_loses_the_lock_and_finds_itself_a_follower(replicas: tuple[Replicas, str]) -> None:
    """SIGSTOP keeps a leader's session open: the database ends it (idle_session_timeout), another leads, and
    the old one, resumed, leads no more."""
    group, token = replicas
    frozen = group.running["a"].pid
    os.killpg(frozen, signal.SIGSTOP)
    try:
        assert group.wait_leader(["b"]) == "b"
    finally:
        os.killpg(frozen, signal.SIGCONT)
    deadline = time.monotonic() + TAKEOVER_BOUND_S
    while (group.health("a") or {}).get("leader") is not False:
        assert time.monotonic() < deadline, group.health("a")
        time.sleep(0.05)
    assert group.leaders() == ["b"]
    client = _lease(group, token, ["a", "b"])
    client.renew(None)
    assert client.urls[client.current] == group.running["b"].url


def test_a_write_on_one_replica_reaches_long_polls_on_another(replicas: tuple[Replicas, str]) -> None:
    group, _token = replicas
    operator = tokens_for_operator(group)
    a, b = group.running["a"], group.running["b"]
    node_token = tokens.create_in(group.db, "node", "h1")
    auth = {"Authorization": f"Bearer {node_token}"}
    register = httpx.post(f"{b.url}/v1/nodes/h1/register", json={"role": "host", "address": "198.18.0.101"},
                          headers=auth, verify=str(b.ca))  # fmt: skip
    assert register.status_code == 200
    first = httpx.get(f"{b.url}/v1/nodes/h1/desired", params={"timeout": 0}, headers=auth, verify=str(b.ca))
    held = int(first.headers["X-Isthmus-Revision"])
    with httpx.Client(verify=str(b.ca), timeout=30) as poller:
        answers: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(poller.get(
            f"{b.url}/v1/nodes/h1/desired", params={"after": held, "timeout": 20}, headers=auth)))  # fmt: skip
        waiting.start()
        time.sleep(0.3)
        put = httpx.put(f"{a.url}/admin/hosts/h1", json={"properties": {"node": "h1", "address": "198.18.0.101"}},
                        headers=operator, verify=str(a.ca))  # fmt: skip
        assert put.status_code in (200, 201), put.text
        waiting.join(timeout=25)
    assert answers and answers[0].status_code == 200
    assert int(answers[0].headers["X-Isthmus-Revision"]) > held


def tokens_for_operator(group: Replicas) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.create_in(group.db, 'operator', 'operator')}"}
