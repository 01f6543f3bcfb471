"""What the MUX's BGP speakers say of their sessions: BIRD's `show protocols` parsed, gobgpd's PeerState mapped,
both to the FSM state names the status report carries; and the MUX agent's samples of them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus._generated.gobgp import gobgp_pb2
from isthmus.agents import mux
from isthmus.agents.loop import Observing
from isthmus.linux.bird import BirdDown, _reply, session_states
from isthmus.linux.gobgp import session_state
from isthmus.linux.speaker import Peer
from isthmus.model import limits

PROTOCOLS = {
    "peer_198_18_0_1": "198.18.0.1",
    "peer_198_18_0_5": "198.18.0.5",
    "peer_2001_db8__1": "2001:db8::1",
    "peer_198_18_0_9": "198.18.0.9",
    "peer_198_18_0_13": "198.18.0.13",
}

# BIRD 2.0.12's answer on its control socket, as it sends it (codes 2002 header, 1002 table, 0000 end)
SHOW_PROTOCOLS = b"""\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     10:12:37.123  
 k4         Kernel     master4    up     10:12:37.123  
 peer_198_18_0_1 BGP        ---        up     10:12:37.123  Established   
 peer_198_18_0_5 BGP        ---        start  10:12:37.123  Active        Socket: Connection refused
 peer_2001_db8__1 BGP        ---        start  10:12:37.123  Idle          
 peer_198_18_0_9 BGP        ---        down   10:12:37.123  Error: Hold timer expired
 peer_198_18_0_13 BGP        ---        start  10:12:37.123  OpenSent      
 peer_203_0_113_7 BGP        ---        up     10:12:37.123  Established   
0000 
"""  # noqa: W291 (BIRD pads its columns)


def test_bird_show_protocols_gives_each_configured_peers_state() -> None:
    lines = _reply(io.BytesIO(SHOW_PROTOCOLS))
    assert session_states(lines, PROTOCOLS) == {
        "198.18.0.1": "Established",
        "198.18.0.5": "Active",  # the first word of Info; the last error follows it
        "2001:db8::1": "Idle",
        "198.18.0.9": "Idle",  # down: Info is the last error, not a state
        "198.18.0.13": "OpenSent",
    }  # peer_203_0_113_7 is no peer of this speaker's (one being removed, say): not reported


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("peer_198_18_0_1 BGP        ---        start  10:12:37.123  ", "Idle"),  # starting, no info yet
        ("peer_198_18_0_1 BGP        ---        down   10:12:37.123  ", "Idle"),
        ("peer_198_18_0_1 BGP        ---        start  10:12:37.123  Connect       ", "Connect"),
        ("peer_198_18_0_1 BGP        ---        start  10:12:37.123  OpenConfirm   ", "OpenConfirm"),
        ("peer_198_18_0_1 BGP        ---        start  10:12:37.123  Passive       ", "Idle"),  # BIRD's own word
        ("peer_198_18_0_1 BGP        ---        flush  2024-05-01    Close         ", "Idle"),
        ("peer_198_18_0_1 BGP        ---        up     10:12:37.123  Established   ", "Established"),
    ],
)
def test_bird_protocol_line(line: str, state: str) -> None:
    assert session_states([line], {"peer_198_18_0_1": "198.18.0.1"}) == {"198.18.0.1": state}


def test_a_peer_bird_does_not_list_is_down() -> None:
    header = "Name       Proto      Table      State  Since         Info"
    assert session_states([header], {"peer_198_18_0_1": "198.18.0.1"}) == {"198.18.0.1": "Down"}
    assert session_states([], {}) == {}


@pytest.mark.parametrize(
    ("session", "name"),
    [
        ("UNKNOWN", "Idle"),
        ("IDLE", "Idle"),
        ("CONNECT", "Connect"),
        ("ACTIVE", "Active"),
        ("OPENSENT", "OpenSent"),
        ("OPENCONFIRM", "OpenConfirm"),
        ("ESTABLISHED", "Established"),
    ],
)
def test_gobgp_session_states(session: str, name: str) -> None:
    state = gobgp_pb2.PeerState(session_state=gobgp_pb2.PeerState.SessionState.Value(session))
    assert session_state(state) == name


def test_gobgp_administratively_down_is_down() -> None:
    state = gobgp_pb2.PeerState(session_state=gobgp_pb2.PeerState.SessionState.Value("IDLE"),
                                admin_state=gobgp_pb2.PeerState.AdminState.Value("DOWN"))  # fmt: skip
    assert session_state(state) == "Down"


class FakeSpeaker:
    """sessions() answers with `answer`, or raises it."""

    def __init__(self) -> None:
        self.answer: dict[str, str] | Exception = {}

    def sessions(self) -> dict[str, str]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def reconciler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[mux.MuxReconciler, FakeSpeaker]:
    speaker = FakeSpeaker()
    monkeypatch.setattr(mux, "sysctl", lambda *_args: None)
    monkeypatch.setattr(mux, "mux_speaker", lambda *_args: (speaker, None))
    made = mux.MuxReconciler("mux1", tmp_path)
    made.session = (65010, "198.18.0.11", (Peer("198.18.0.1", 65000), Peer("198.18.0.3", 65000)))
    return made, speaker


def test_the_mux_reports_each_change_of_its_sessions(reconciler: tuple[mux.MuxReconciler, Any]) -> None:
    made, speaker = reconciler
    assert isinstance(made, Observing)
    assert made.observed() == {"sessions": {}}
    speaker.answer = {"198.18.0.1": "Active", "198.18.0.3": "Established"}
    assert made.observe() is True
    assert made.observe() is False  # nothing changed
    assert made.observed() == {"sessions": {"198.18.0.1": "Active", "198.18.0.3": "Established"}}
    speaker.answer = {"198.18.0.1": "Established", "198.18.0.3": "Established"}
    assert made.observe() is True


def test_a_speaker_too_busy_keeps_the_last_sample_and_a_silent_one_is_down(
    reconciler: tuple[mux.MuxReconciler, Any],
) -> None:
    made, speaker = reconciler
    speaker.answer = {"198.18.0.1": "Established", "198.18.0.3": "Established"}
    assert made.observe() is True
    speaker.answer = TimeoutError("busy")
    assert made.observe() is False
    assert made.observed()["sessions"]["198.18.0.1"] == "Established"
    for silent in (BirdDown("no socket"), grpc.RpcError(), OSError("refused")):
        speaker.answer = {"198.18.0.1": "Established", "198.18.0.3": "Established"}
        made.observe()
        speaker.answer = silent
        assert made.observe() is True
        assert made.observed() == {"sessions": {"198.18.0.1": "Down", "198.18.0.3": "Down"}}


def test_the_report_holds_at_most_the_limit(reconciler: tuple[mux.MuxReconciler, Any]) -> None:
    made, speaker = reconciler
    speaker.answer = {f"100.64.0.{i}": "Idle" for i in range(limits.REPORT_BGP_SESSIONS + 5)}
    made.observe()
    assert len(made.observed()["sessions"]) == limits.REPORT_BGP_SESSIONS


def test_a_muxs_sessions_are_metrics_and_it_has_no_connection_metrics() -> None:
    from types import SimpleNamespace

    from isthmus.agents.loop import Outcome
    from isthmus.agents.metrics import AgentCollector

    class Observed:
        def observe(self) -> bool:
            return False

        def observed(self) -> dict[str, object]:
            return {"sessions": {"198.18.0.1": "Established", "198.18.0.5": "Active"}}

    agent = SimpleNamespace(passes=3, applied=7, outcome=Outcome(), reconciler=Observed())
    families = {f.name: f for f in AgentCollector(agent, "mux", "mux1").collect()}  # type: ignore[arg-type]
    assert "isthmus_connection_bytes" not in families
    samples = {(s.labels["peer"], s.labels["state"]): s.value for s in families["isthmus_bgp_session_up"].samples}
    assert samples == {("198.18.0.1", "Established"): 1.0, ("198.18.0.5", "Active"): 0.0}
