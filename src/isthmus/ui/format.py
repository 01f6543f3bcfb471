"""How the pages write numbers and names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

NONE = "\N{EN DASH}"  # a value not known (yet)


def size(count: Any) -> str:
    """Bytes, in the largest unit that keeps a number of at least 1."""
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def bits(rate: Any) -> str:
    """Bits per second."""
    if rate is None:
        return NONE
    value = float(rate)
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if value < 1000 or unit == "Gbit/s":
            return f"{value:.0f} {unit}" if unit == "bit/s" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} Gbit/s"


def mbps(kbps: Any) -> str:
    return f"{int(kbps or 0) / 1000:g} Mbit/s"


def last(resource_id: Any) -> str:
    """The name at the end of an ARM id or admin path."""
    return str(resource_id or "").rstrip("/").rsplit("/", 1)[-1]


def owner(resource_id: Any) -> str:
    """Where an ARM resource lives, shortly: its resource group and the start of its subscription."""
    parts = str(resource_id or "").split("/")
    if len(parts) > 4 and parts[1].lower() == "subscriptions":
        return f"{parts[4]} · {parts[2][:8]}"
    return ""


def ms(value: Any) -> str:
    if value is None:
        return NONE
    return f"{int(value)} ms" if int(value) < 10_000 else f"{int(value) / 1000:.1f} s"


def url(value: Any) -> str:
    return quote(str(value), safe="")


def css(word: Any) -> str:
    """A status as a class name: Connected -> connected, NotConnected -> notconnected."""
    return "".join(ch for ch in str(word).lower() if ch.isalnum())


FILTERS: dict[str, Callable[..., str]] = {
    "size": size, "bits": bits, "mbps": mbps, "last": last, "owner": owner, "ms": ms, "url": url, "css": css,
}  # fmt: skip
