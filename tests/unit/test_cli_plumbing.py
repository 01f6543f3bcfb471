"""The CLI's pure pieces: global options hoisted before the subcommand, ARM ids shown as names, tables
fitted to the terminal by dropping columns in their order of priority."""

from __future__ import annotations

import pytest
from rich.console import Console

from isthmus.cli import client
from isthmus.cli.client import Column, Settings, short_id
from isthmus.cli.main import hoisted

NIC = "/subscriptions/S/resourceGroups/G/providers/Microsoft.Network/networkInterfaces/vm1-nic"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["placement", "-o", "json"], ["-o", "json", "placement"]),
        (["vnet", "list", "--output=yaml", "--wide"], ["--output=yaml", "--wide", "vnet", "list"]),
        (["nsg", "show", "x", "-ojson", "-g", "G"], ["-ojson", "nsg", "show", "x", "-g", "G"]),
        (["lab", "vm", "exec", "vm1", "--", "ping", "-o", "x"], ["lab", "vm", "exec", "vm1", "--", "ping", "-o", "x"]),
        (["agent", "host", "--controller", "U", "--ids"], ["--ids", "agent", "host", "--controller", "U"]),
        (["vnet", "list", "-o"], ["vnet", "list", "-o"]),  # a dangling option is left for the parser to refuse
    ],
)
def test_global_options_are_hoisted_before_the_subcommand(given: list[str], expected: list[str]) -> None:
    assert hoisted(given) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NIC, "vm1-nic"),
        (f"{NIC}/ipConfigurations/ipconfig1", "vm1-nic/ipconfig1"),
        ("/subscriptions/S/resourceGroups/G", "/subscriptions/S/resourceGroups/G"),
        ("198.51.100.7", "198.51.100.7"),
    ],
)
def test_arm_ids_are_shown_as_names(text: str, expected: str) -> None:
    assert short_id(text) == expected


ROWS = [{"name": "web", "id": NIC, "note": "x" * 30, "extra": "y" * 30}]
COLUMNS = [
    Column("name", lambda r: r["name"]),
    Column("nic", lambda r: r["id"]),
    Column("note", lambda r: r["note"], drop=2),
    Column("extra", lambda r: r["extra"], drop=1),
]


def printed(monkeypatch: pytest.MonkeyPatch, width: int, **options: bool) -> list[str]:
    console = Console(width=width, record=True, force_terminal=False)
    monkeypatch.setattr(client, "console", console)
    client.show(Settings("https://x", "t", None, **options), ROWS, COLUMNS, "t")
    return console.export_text().splitlines()


def test_a_narrow_terminal_drops_the_highest_drop_first(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = printed(monkeypatch, 60)
    assert max(map(len, lines)) <= 60
    table, footnote = "\n".join(lines[:-1]), lines[-1]
    assert "note" not in table and "extra" in table and "vm1-nic" in table
    assert footnote == "not shown for the terminal's width: note (--wide shows all)"


def test_columns_that_never_drop_stay_and_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = printed(monkeypatch, 20)
    text = "\n".join(lines)
    assert "note" not in text.split("not shown")[0] and "extra" not in text.split("not shown")[0]
    assert "web" in text


def test_ids_and_wide_show_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Console] = []
    monkeypatch.setattr(client, "console", Console(width=60))
    monkeypatch.setattr(client, "Console", lambda width: made.append(Console(width=width, record=True)) or made[-1])
    client.show(Settings("https://x", "t", None, wide=True, ids=True), ROWS, COLUMNS, "t")
    text = made[0].export_text()
    assert "note" in text and "extra" in text and NIC in text
