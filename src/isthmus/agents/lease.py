"""A node's side of the lease protocol (`POST /v1/nodes/{node}/lease`, api/lease_protocol.py).

Standard library only: the gateway's watchdog imports it, and a watchdog must start in a fraction of a
second (no pydantic, no httpx). One kept-alive HTTP(S) connection; a renewal that fails closes it, and the
next opens a new one. The timeout is generous (a TLS handshake in a qemu guest under TCG takes hundreds of
milliseconds): the watchdog renews in a thread of its own and times a failure from when it was sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

STALE_CODES = ("LeaseEpochStale", "LeaseRenewalStale")


@dataclass(frozen=True)
class Granted:
    epoch: int
    duration: float  # seconds, counted by the renewer from when it sent the renewal
    interval: float
    document: int  # the document revision to hold before acting on this epoch's assignment (0: any)
    sent: float  # this process's monotonic clock when the renewal was sent


class Refused(Exception):
    """The controller refused the renewal: the epoch ended (or the renewal was older than the last)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Unreachable(Exception):
    """No answer from the controller (network, TLS, timeout, or an error that is not a refusal)."""


class LeaseClient:
    def __init__(self, url: str, token: str, ca: str | None, node: str, *, timeout: float = 1.0) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = f"{parts.path.rstrip('/')}/v1/nodes/{node}/lease"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca) if self.https else None
        self._connection: http.client.HTTPConnection | None = None

    def renew(self, epoch: int | None) -> Granted:
        """Renew lease `epoch` (None: acquire a new one, or learn the one held). Refused or Unreachable."""
        sent = time.monotonic()
        body = json.dumps({"epoch": epoch, "sequence": time.monotonic_ns() // 1_000_000})
        try:
            connection = self._connect()
            connection.request("POST", self.path, body, self.headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise Unreachable(f"{type(error).__name__}: {error}") from None
        if response.status == 200:
            answer = json.loads(data)
            return Granted(int(answer["epoch"]), answer["durationMs"] / 1000, answer["intervalMs"] / 1000,
                           int(answer.get("document", 0)), sent)  # fmt: skip
        try:
            refusal = json.loads(data).get("error", {})
        except ValueError:
            refusal = {}
        if response.status == 409 and refusal.get("code") in STALE_CODES:
            raise Refused(refusal["code"], refusal.get("message", ""))
        raise Unreachable(f"HTTP {response.status}: {refusal.get('message', data[:200])}")

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self.https:
                self._connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
