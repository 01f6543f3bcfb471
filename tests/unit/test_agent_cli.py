"""`isthmus agent host|mux|gateway` parses with argparse (no typer: an agent also starts in a TCG guest): the
options each role has, and the environment variables that stand in for --controller, --ca and --speaker."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from isthmus.cli import agent


def test_a_host_agent_takes_the_options_the_lab_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISTHMUS_CONTROLLER", raising=False)
    monkeypatch.delenv("ISTHMUS_CA", raising=False)
    args = ["host", "--node", "h1", "--controller", "https://198.18.255.1:8443", "--ca", "/x/ca.pem",
            "--token-file", "/x/h1.token", "--address", "198.18.0.101", "--log-level", "debug",
            "--metrics", "198.18.255.101:9464", "--netns-prefix", "lab-"]  # fmt: skip
    options = agent.parser().parse_args(args)
    assert options.run is agent.host
    assert (options.node, options.controller, options.ca, options.token_file) == (
        "h1", "https://198.18.255.1:8443", "/x/ca.pem", Path("/x/h1.token"))  # fmt: skip
    assert (options.address, options.log_level, options.metrics, options.netns_prefix) == (
        "198.18.0.101", "debug", "198.18.255.101:9464", "lab-")  # fmt: skip


def test_the_environment_stands_in_for_controller_ca_and_speaker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_CONTROLLER", "https://192.0.2.10:8443")
    monkeypatch.setenv("ISTHMUS_CA", "/etc/isthmus/ca.pem")
    monkeypatch.setenv("ISTHMUS_MUX_SPEAKER", "gobgp")
    options = agent.parser().parse_args(["mux", "--node", "mux1", "--token-file", "t"])
    assert (options.controller, options.ca, options.speaker, options.run_dir) == (
        "https://192.0.2.10:8443", "/etc/isthmus/ca.pem", "gobgp", None)  # fmt: skip
    assert agent.parser().parse_args(["mux", "--node", "m", "--token-file", "t", "--controller", "u"]).controller == "u"


def test_what_is_missing_or_unknown_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.delenv("ISTHMUS_CONTROLLER", raising=False)
    with pytest.raises(SystemExit) as exit_:
        agent.main(["host", "--node", "h1", "--token-file", "t"])
    assert exit_.value.code == 2 and "--controller" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        agent.main(["host", "--node", "h1", "--token-file", "t", "--controller", "u", "--run-dir", "/r"])
    assert "unrecognized arguments: --run-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        agent.main(["mux", "--node", "m", "--token-file", "t", "--controller", "u", "--speaker", "quagga"])
    assert "invalid choice: 'quagga'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        agent.main([])
    assert exit_.value.code == 2 and "{host,mux,gateway}" in capsys.readouterr().out


def test_a_gateway_agent_has_its_provider_device_and_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISTHMUS_CONTROLLER", raising=False)
    args = ["gateway", "--node", "gw1", "--controller", "u", "--token-file", "t", "--run-dir", "/run/x",
            "--provider-device", "prov0"]  # fmt: skip
    options = agent.parser().parse_args(args)
    assert (options.run, options.run_dir, options.provider_device, options.netns_prefix) == (
        agent.gateway, Path("/run/x"), "prov0", "isthmus-")  # fmt: skip


def test_a_failure_while_running_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def host(options: argparse.Namespace) -> None:
        raise FileNotFoundError(f"no {options.token_file}")

    monkeypatch.setattr(agent, "host", host)
    with pytest.raises(SystemExit) as exit_:
        agent.main(["host", "--node", "h1", "--controller", "u", "--token-file", "/absent/token"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "isthmus: error: FileNotFoundError: no /absent/token\n"
