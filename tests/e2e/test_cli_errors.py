"""The CLI as a newcomer meets it (issue 11): every failure is one line on stderr that names what failed and
what to do, with a non-zero exit; `--debug` shows the traceback; the global options go before or after the
subcommand; tables fit the terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from isthmus import pki
from isthmus.lab.controller import free_port, start_controller, stop
from tests.e2e.conftest import SUB_A, Live


def isthmus(*args: str, columns: int = 200, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ISTHMUS_")}
    environment |= {"COLUMNS": str(columns), **env}
    command = [sys.executable, "-m", "isthmus", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def as_tenant(live: Live, *args: str, columns: int = 200, **env: str) -> subprocess.CompletedProcess[str]:
    reach = {"ISTHMUS_CONTROLLER": live.url, "ISTHMUS_CA": str(live.ca), "ISTHMUS_TOKEN": live.tenant_a}
    return isthmus(*args, columns=columns, **(reach | env))


def one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The failure's message, checked to be one line on stderr naming each of `words`."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isthmus: error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def group(live: Live) -> str:
    http = httpx.Client(base_url=live.url, verify=str(live.ca), headers={"Authorization": f"Bearer {live.tenant_a}"})
    base = f"/subscriptions/{SUB_A}/resourcegroups/errors"
    assert http.put(base, params={"api-version": "2024-11-01"}, json={"location": "local"}).status_code < 300
    vnet = {
        "location": "local",
        "properties": {
            "addressSpace": {"addressPrefixes": ["100.64.8.0/24", "100.64.9.0/24", "100.64.10.0/24"]},
            "subnets": [{"name": f"s{i}", "properties": {"addressPrefix": f"100.64.{8 + i}.0/24"}} for i in range(3)],
        },
    }
    path = f"{base}/providers/Microsoft.Network/virtualNetworks/a-network-with-a-rather-long-name"
    assert http.put(path, params={"api-version": "2026-03-01"}, json=vnet).status_code < 300
    return "errors"


def test_a_ca_that_does_not_vouch_for_the_controller(live: Live, tmp_path: Path) -> None:
    other = pki.init(tmp_path / "other")
    done = as_tenant(live, "vnet", "list", ISTHMUS_CA=str(other))
    one_line_error(done, live.url, str(other), "--ca")


def test_a_missing_or_unreadable_ca_file_is_named(live: Live, tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.pem"
    one_line_error(as_tenant(live, "vnet", "list", ISTHMUS_CA=str(missing)), str(missing), "does not exist")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    one_line_error(as_tenant(live, "vnet", "list", ISTHMUS_CA=str(garbage)), str(garbage), "PEM")


def test_a_controller_that_is_down(live: Live) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    one_line_error(as_tenant(live, "vnet", "list", ISTHMUS_CONTROLLER=url), url, "is it running")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("schemeless", ("https://",)),
        ("http", ("https://", "scheme")),
    ],
)
def test_a_url_without_the_right_scheme(live: Live, url: str, words: tuple[str, ...]) -> None:
    given = live.url.removeprefix("https://") if url == "schemeless" else live.url.replace("https://", "http://")
    one_line_error(as_tenant(live, "vnet", "list", ISTHMUS_CONTROLLER=given), given, *words)


def test_debug_shows_the_traceback(live: Live) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    done = as_tenant(live, "vnet", "list", "--debug", ISTHMUS_CONTROLLER=url)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("isthmus: error: cannot reach")


def test_an_arm_error_is_one_line_with_its_code(live: Live) -> None:
    done = as_tenant(live, "nsg", "show", "nosuch", "-g", "errors")
    one_line_error(done, "404", "NotFound")


def test_the_output_option_goes_before_or_after_the_command(live: Live, group: str) -> None:
    before = as_tenant(live, "-o", "json", "vnet", "list")
    after = as_tenant(live, "vnet", "list", "-o", "json")
    joined = as_tenant(live, "vnet", "list", "--output=json")
    assert before.returncode == after.returncode == joined.returncode == 0, after.stderr
    assert before.stdout == after.stdout == joined.stdout and '"a-network-with-a-rather-long-name"' in after.stdout
    yaml = as_tenant(live, "vnet", "list", "-o", "yaml")
    assert yaml.returncode == 0 and "name: a-network-with-a-rather-long-name" in yaml.stdout
    one_line_error(as_tenant(live, "vnet", "list", "-o", "xml"), "--output", "table, json, yaml")


def test_the_subscription_defaults_to_the_tokens_own(live: Live, group: str) -> None:
    done = as_tenant(live, "vnet", "list")
    assert done.returncode == 0 and "a-network-with-a-rather-long-name" in done.stdout
    operator = as_tenant(live, "vnet", "list", ISTHMUS_TOKEN=live.operator)
    one_line_error(operator, "--subscription")


def test_tables_fit_80_columns_and_wide_shows_everything(live: Live, group: str) -> None:
    narrow = as_tenant(live, "vnet", "list", columns=80)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    assert "a-network-with-a-rather-long-name" in narrow.stdout  # the name is never cut
    wide = as_tenant(live, "vnet", "list", "--wide", columns=80)
    assert wide.returncode == 0 and "--wide" not in wide.stdout
    for header in ("name", "group", "location", "address space", "subnets"):
        assert header in wide.stdout


def test_version_and_short_help() -> None:
    version = isthmus("--version")
    assert version.returncode == 0 and version.stdout.startswith("isthmus ")
    short = isthmus("vnet", "-h")
    assert short.returncode == 0 and "list" in short.stdout


def test_an_unknown_command_is_one_line_with_a_hint() -> None:
    one_line_error(isthmus("vnet", "lst"), "No such command", "isthmus vnet --help")


def test_controller_start_up_failures_are_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'isthmus.db'}"
    missing = tmp_path / "nopki"
    one_line_error(isthmus("controller", "--db", db, "--tls-dir", str(missing)), str(missing), "pki init")
    tls = tmp_path / "pki"
    pki.init(tls)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = str(holder.getsockname()[1])
        busy = isthmus("controller", "--db", db, "--tls-dir", str(tls), "--port", port)
    one_line_error(busy, f"127.0.0.1:{port}", "in use", "--port")
    one_line_error(isthmus("controller", "--db", "nonsense", "--tls-dir", str(tls)), "nonsense", "sqlite:///")


def test_a_second_controller_on_one_sqlite_store_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'isthmus.db'}"
    running = start_controller(db, tmp_path)
    try:
        second = isthmus("controller", "--db", db, "--tls-dir", str(tmp_path / "pki"), "--port", "0")
        one_line_error(second, f"pid {running.pid}", "SQLite takes one controller", "PostgreSQL")
    finally:
        stop(running.pid)


def test_controller_says_where_it_listens(tmp_path: Path) -> None:
    running = start_controller(f"sqlite:///{tmp_path / 'isthmus.db'}", tmp_path)
    try:
        said = running.log.read_text()
    finally:
        stop(running.pid)
    assert f"listening on {running.url}" in said
    assert f"store sqlite:///{tmp_path / 'isthmus.db'}" in said and "TLS certificate" in said


def test_token_create_names_its_store(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    done = isthmus("token", "create", "--subscription", SUB_A, "--db", db)
    assert done.returncode == 0 and done.stdout.startswith("ism_")
    assert f"sqlite:///{tmp_path / 'tokens.db'}" in done.stderr
