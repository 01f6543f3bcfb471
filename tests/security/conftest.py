"""A real controller process serving HTTPS on loopback, and a raw client that can misbehave on purpose."""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from isthmus.lab.controller import RunningController, controller_process
from isthmus.store import tokens
from isthmus.store.db import make_engine

TENANT = "00000000-0000-0000-0000-00000000000a"


@dataclass(frozen=True)
class Served(RunningController):
    """The controller, with a token of subscription TENANT."""

    token: str = ""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("controller")
    db = f"sqlite:///{workdir / 'isthmus.db'}"
    with controller_process(db, workdir) as running:
        engine = make_engine(db)
        try:
            token = tokens.create(engine, "subscription", TENANT)
        finally:
            engine.dispose()
        yield Served(**vars(running), token=token)


@dataclass
class Closed:
    """What a connection received until the server closed it, and when."""

    data: bytes
    after_s: float  # seconds from `since` to the close

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1]) if self.data.startswith(b"HTTP/1.1 ") else 0

    def error(self) -> dict[str, Any]:
        """The ARM error of the response: {"code", "message", ...} (fails if the body is not one)."""
        head, _, body = self.data.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), self.data[:500]
        error: dict[str, Any] = json.loads(body)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), error
        return error


def address(controller: RunningController) -> tuple[str, int]:
    host, port = controller.url.removeprefix("https://").split(":")
    return host, int(port)


class Conn:
    """A raw connection that keeps what it has received (a TLS socket is readable for the session tickets
    alone, so readability says nothing: `answered` reads without blocking instead)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self.eof = False

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answered(self) -> bool:
        """Whether the server has sent a byte of answer (or closed), reading only what is already there."""
        if not self.eof and select.select([self.sock], [], [], 0)[0]:
            self.sock.setblocking(False)
            try:
                piece = self.sock.recv(65536)
                self.received += piece
                self.eof = not piece
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                self.eof = True
            finally:
                self.sock.setblocking(True)
        return self.eof or bool(self.received)

    def send_until_answered(self, data: bytes, chunk: int = 16 * 1024) -> int:
        """Send `data` in chunks until the server answers or stops reading; the bytes sent."""
        sent = 0
        while sent < len(data) and not self.answered():
            try:
                self.sock.sendall(data[sent : sent + chunk])
            except (OSError, ssl.SSLError):
                break
            sent += chunk
        return min(sent, len(data))

    def until_closed(self, since: float, limit: float) -> Closed:
        """Read until the server closes the connection (at most `limit` seconds from `since`)."""
        while not self.eof:
            self.sock.settimeout(max(0.01, since + limit - time.monotonic()))
            try:
                piece = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"still open after {limit} s; received {self.received[:300]!r}") from None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                piece = b""
            self.received += piece
            self.eof = not piece
        self.sock.close()
        return Closed(self.received, time.monotonic() - since)


def tcp(controller: RunningController, timeout: float = 30.0) -> Conn:
    return Conn(socket.create_connection(address(controller), timeout=timeout))


def tls(controller: RunningController, timeout: float = 30.0) -> Conn:
    context = ssl.create_default_context(cafile=str(controller.ca))
    sock = socket.create_connection(address(controller), timeout=timeout)
    return Conn(context.wrap_socket(sock, server_hostname="127.0.0.1"))


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
