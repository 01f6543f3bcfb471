"""The agent shell against a real controller over HTTPS: it registers with its probed capabilities, follows
its node's document through deltas and reports on its own heartbeat. (A gateway's lease and fence are its
watchdog's: tests/e2e/test_watchdog.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from isthmus.agents.client import ControllerClient
from isthmus.agents.loop import Agent, Outcome, backoff
from isthmus.linux.datapath import probe_for_registration
from isthmus.model.documents import Delta, HostDocument
from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.e2e.conftest import Live


class Recorder:
    """A reconciler that only remembers what it was asked to do."""

    def __init__(self) -> None:
        self.passes: list[tuple[HostDocument, bool, tuple[Delta, ...]]] = []

    def reconcile(self, document: Any, *, full: bool, deltas: tuple[Delta, ...] = ()) -> Outcome:
        self.passes.append((document, full, deltas))
        return Outcome(resources={}, details={"seen": document.revision})

    def healthy(self) -> bool:
        return True


def until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = [backoff(attempt) for attempt in range(1, 12)]
    assert all(0.25 <= d <= 10.0 for d in delays)
    assert max(delays[-3:]) > 4.0  # reaches the cap's region


def test_the_agent_follows_deltas_and_reports_on_its_own_timer(live: Live) -> None:
    engine = make_engine(live.db)
    node_token = tokens.create(engine, "node", "shell-host")
    engine.dispose()
    operator = httpx.Client(
        base_url=live.url, verify=str(live.ca), headers={"Authorization": f"Bearer {live.operator}"}
    )
    assert operator.put("/admin/hosts/shell-host", json={"properties": {"node": "shell-host", "address": "198.18.0.77"}}
                        ).status_code in (200, 201)  # fmt: skip
    recorder = Recorder()
    client = ControllerClient(live.url, node_token, str(live.ca), "shell-host", "host")
    probed = probe_for_registration()  # None where this test may not create namespaces
    agent = Agent(client, recorder, "198.18.0.77", heartbeat=0.2, resync=3600, long_poll=1.0, capabilities=probed)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,))
    runner.start()
    try:
        assert until(lambda: len(recorder.passes) == 1, 10)
        first, full, deltas = recorder.passes[0]
        assert first.node == "shell-host" and str(first.address) == "198.18.0.77" and deltas == ()

        def me() -> dict[str, Any]:
            return dict(next(n for n in operator.get("/admin/nodes").json()["value"] if n["name"] == "shell-host"))

        def reported() -> int:
            return int(me().get("appliedRevision", 0))

        assert until(lambda: reported() == first.revision, 5)
        # The registration carried what the probe found, and the datapath chosen from it.
        features = {k: v for k, v in (probed or {}).items() if k != "datapath"}
        assert (me()["capabilities"], me()["datapath"]) == (features, (probed or {}).get("datapath", {}))
        # A change that reaches this host comes as a delta; the reconciler still gets the whole document.
        operator.put("/admin/hosts/shell-host", json={"properties": {"node": "shell-host", "address": "198.18.0.78"}})
        assert until(lambda: len(recorder.passes) == 2, 10)
        second, full, deltas = recorder.passes[1]
        assert str(second.address) == "198.18.0.78" and not full
        assert [type(d).__name__ for d in deltas] == ["HostDelta"] and deltas[0].base == first.revision
        assert until(lambda: reported() == second.revision, 5)
        # Heartbeats go on while the long-poll waits: reports keep arriving with nothing to apply.
        seen = me()["lastSeen"]
        assert until(lambda: me()["lastSeen"] != seen, 5)
        assert len(recorder.passes) == 2
    finally:
        stop.set()
        runner.join(timeout=40)
        operator.close()
    assert not runner.is_alive()
