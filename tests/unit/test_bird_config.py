"""BIRD's config as BirdSpeaker writes it: a golden string (checked with `bird -p` when BIRD is installed), and
the inputs read back from its first line."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from isthmus.linux.bird import BirdError, BirdState, _reply, peer_protocol, read_state, render_config
from isthmus.linux.speaker import Peer

STATE = BirdState(65010, "198.18.0.11", (Peer("198.18.0.1", 65000), Peer("2001:db8::1", 65001)))
GOLDEN = """\
# isthmus BirdSpeaker {"asn":65010,"routerId":"198.18.0.11","peers":[["198.18.0.1",65000],["2001:db8::1",65001]]}
log stderr { info, remote, warning, error, auth, fatal, bug };
router id 198.18.0.11;

protocol device {
  scan time 10;
}

protocol kernel k4 {
  ipv4 { import where krt_source = 77 || krt_source = 78; export none; };
  learn;
  scan time 10;
  netlink rx buffer 67108864;
}

protocol kernel k6 {
  ipv6 { import where krt_source = 77 || krt_source = 78; export none; };
  learn;
  scan time 10;
  netlink rx buffer 67108864;
}

protocol bgp peer_198_18_0_1 {
  local as 65010;
  neighbor 198.18.0.1 as 65000;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 10;
  graceful restart off;
  ipv4 { import none; export all; next hop self; };
}

protocol bgp peer_2001_db8__1 {
  local as 65010;
  neighbor 2001:db8::1 as 65001;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 10;
  graceful restart off;
  ipv6 { import none; export all; next hop self; };
}
"""


def test_golden() -> None:
    assert render_config(STATE) == GOLDEN


def test_inputs_read_back() -> None:
    assert read_state(render_config(STATE)) == STATE
    assert read_state(render_config(BirdState())) == BirdState()
    assert read_state("router id 1;\n") == BirdState()  # not ours: nothing known


def test_no_identity_no_sessions() -> None:
    """Peers set before the identity are remembered, not configured (a session needs the local ASN)."""
    early = render_config(BirdState(None, None, STATE.peers))
    assert "router id 1;" in early and "protocol bgp" not in early
    assert read_state(early).peers == STATE.peers


def test_protocol_names() -> None:
    assert peer_protocol(Peer("198.18.0.1", 65000)) == "peer_198_18_0_1"
    assert peer_protocol(Peer("2001:db8::1", 65000)) == "peer_2001_db8__1"


def test_bird_parses_it(tmp_path: Path) -> None:
    """BIRD itself (installed by scripts/bootstrap) accepts the rendered config."""
    for state in (STATE, BirdState()):
        config = tmp_path / "bird.conf"
        config.write_text(render_config(state))
        parsed = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True, check=False)
        assert parsed.returncode == 0, parsed.stderr


def test_control_socket_replies() -> None:
    """BIRD's reply lines: `CODE-text` (more follow), ` text` (same code), `CODE text` (the last); 8xxx/9xxx fail."""
    table = b"1007-Table master4:\n 203.0.113.5/32       blackhole [k4 05:39:20.500] * (10)\n \n0000 \n"
    assert _reply(io.BytesIO(table)) == ["Table master4:", "203.0.113.5/32       blackhole [k4 05:39:20.500] * (10)",
                                         "", ""]  # fmt: skip
    assert _reply(io.BytesIO(b"0002-Reading configuration from bird.conf\n0003 Reconfigured\n"))[-1] == "Reconfigured"
    with pytest.raises(BirdError, match="syntax error"):
        _reply(io.BytesIO(b"0002-Reading configuration from bird.conf\n8002 bird.conf:3:1 syntax error\n"))
    with pytest.raises(BirdError, match="closed"):
        _reply(io.BytesIO(b"1007-Table master4:\n"))
