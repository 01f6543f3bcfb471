"""The dashboard's pages for people who navigate by keyboard or screen reader, and its colours' contrast
(WCAG 2: at least 4.5:1 for text)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import Controller
from tests.ui.test_pages import CONNECTION, _world

CSS = Path(__file__).parents[2] / "src/isthmus/ui/static/ui.css"


class Outline(HTMLParser):
    """What the checks need of a page: headings, labels and the inputs they name, table headers, links."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open_labels = 0
        self.wrapped_inputs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "label":
            self.open_labels += 1
        elif tag == "input" and self.open_labels:
            self.wrapped_inputs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def outline(html: str) -> Outline:
    parsed = Outline()
    parsed.feed(html)
    return parsed


@pytest.mark.parametrize("controller", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "path",
    [
        "/ui/login",
        "/ui/fabric",
        "/ui/connections",
        f"/ui/connection?id={CONNECTION}",
        "/ui/events",
        "/ui/placement?drain=gw1",
        "/ui/nowhere",
    ],
)
def test_every_page_has_a_language_one_title_labelled_inputs_and_headed_tables(seeded: Controller, path: str) -> None:
    _world(seeded)
    html = seeded.client.get(path, headers=seeded.headers(seeded.operator)).text
    page = outline(html)
    assert page.all("html")[0].get("lang") == "en"
    assert len(page.all("h1")) == 1
    assert any(a.get("href") == "#main" for a in page.all("a")), "a link to skip to the content"
    assert page.all("main")[0].get("id") == "main"
    labelled = {label.get("for") for label in page.all("label")}
    inputs = [i for i in page.all("input") if i.get("type") != "hidden"]
    assert len(inputs) == page.wrapped_inputs + sum(i.get("id") in labelled for i in inputs if i.get("id"))
    headers = page.all("th")
    assert all(h.get("scope") in ("col", "row") for h in headers), "every table header says what it heads"
    assert len(page.all("table")) == len(page.all("caption")), "every table has a caption"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_text_colours_are_readable_on_their_backgrounds() -> None:
    css = CSS.read_text()
    colour = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-f]{6})", css))
    pairs = [(text, background) for text in ("fg", "muted", "accent", "ok", "bad", "warn", "in", "out")
             for background in ("bg", "panel")]  # fmt: skip
    for text, background in pairs:
        ratio = contrast(colour[text], colour[background])
        assert ratio >= 4.5, f"--{text} on --{background}: {ratio:.2f}"
    assert contrast("#ffffff", "#132a43") >= 7  # the page header
    assert contrast("#0e4d21", "#d8ecdc") >= 4.5 and contrast("#2c3440", "#e3e8ee") >= 4.5  # role badges
    assert contrast("#ffffff", colour["bad"]) >= 4.5  # "live updates lost"
