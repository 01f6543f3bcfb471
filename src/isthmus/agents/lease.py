"""A node's side of the lease protocol (`POST /v1/nodes/{node}/lease`, api/lease_protocol.py).

Standard library only: the gateway's watchdog imports it, and a watchdog must start in a fraction of a
second (no pydantic, no httpx). One kept-alive HTTP(S) connection; a renewal that fails closes it, and the
next opens a new one. The timeout is generous (a TLS handshake in a qemu guest under TCG takes hundreds of
milliseconds): the watchdog renews in a thread of its own and times a failure from when it was sent.

With several controller replicas (api/replica.py) the node is given all their URLs, comma-separated; only the
leader takes renewals, and a renewal that finds a replica unreachable or not leading (503 NotLeader) tries the
next, each at most once, so a new leader is found within one renewal.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

STALE_CODES = ("LeaseEpochStale", "LeaseRenewalStale")


def controller_urls(controllers: str) -> list[str]:
    """The controller replicas' URLs in `--controller A[,B...]`."""
    urls = [url.strip() for url in controllers.split(",") if url.strip()]
    if not urls:
        raise ValueError(f"no controller URL in {controllers!r}")
    return urls


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
    def __init__(self, controllers: str, token: str, ca: str | None, node: str, *, timeout: float = 1.0) -> None:
        self.urls = controller_urls(controllers)
        self.node = node
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self.current = 0  # the index of the URL renewals go to (the leader, last we heard)
        self._connection: http.client.HTTPConnection | None = None

    def renew(self, epoch: int | None) -> Granted:
        """Renew lease `epoch` (None: acquire a new one, or learn the one held) with the leading replica,
        trying each URL once. Refused or Unreachable."""
        failures = []
        for _attempt in self.urls:
            try:
                return self._renew_here(epoch)
            except Unreachable as error:
                failures.append(f"{self.urls[self.current]}: {error}")
                self.close()
                self.current = (self.current + 1) % len(self.urls)
        raise Unreachable("; ".join(failures))

    def _renew_here(self, epoch: int | None) -> Granted:
        sent = time.monotonic()
        body = json.dumps({"epoch": epoch, "sequence": time.monotonic_ns() // 1_000_000})
        parts = urlsplit(self.urls[self.current])
        try:
            connection = self._connect()
            connection.request("POST", f"{parts.path.rstrip('/')}/v1/nodes/{self.node}/lease", body, self.headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
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
            parts = urlsplit(self.urls[self.current])
            host = parts.hostname or "localhost"
            if parts.scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    host, parts.port or 443, timeout=self.timeout, context=self.context
                )
            else:
                self._connection = http.client.HTTPConnection(host, parts.port or 80, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
