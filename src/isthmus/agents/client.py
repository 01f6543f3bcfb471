"""An agent's side of the agent protocol: register, long-poll the desired document (or the deltas to it),
report status.

`url` may name several controller replicas, comma-separated (api/replica.py): every replica serves this
protocol, so a request that cannot reach one moves the client on to the next for the requests after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from isthmus.agents.lease import controller_urls


@dataclass
class ControllerClient:
    url: str
    token: str
    ca: str | None
    node: str
    role: str

    def __post_init__(self) -> None:
        self.urls = controller_urls(self.url)
        self.http = _Replicas(self.urls, self._client(httpx.Timeout(10.0, read=70.0)))
        # The heartbeat reports on a timer of its own, beside a long-poll that may be waiting: its own
        # connection, so neither waits for the other.
        self.heartbeat_http = _Replicas(self.urls, self._client(httpx.Timeout(5.0)))

    def _client(self, timeout: httpx.Timeout) -> Callable[[str], httpx.Client]:
        headers = {"Authorization": f"Bearer {self.token}"}
        verify = self.ca if self.ca else True
        return lambda url: httpx.Client(base_url=url, headers=headers, verify=verify, timeout=timeout)

    def register(self, address: str | None, capabilities: dict[str, Any] | None = None) -> None:
        """`capabilities`: the probe's answer and the datapath chosen from it (linux/datapath.py), if any."""
        body: dict[str, Any] = {"role": self.role, "address": address}
        if capabilities is not None:
            body["capabilities"] = capabilities
        response = self.http.post(f"/v1/nodes/{self.node}/register", json=body)
        response.raise_for_status()

    def desired(self, after: int, timeout: float) -> dict[str, Any] | None:
        """{"revision", "document"} or {"revision", "deltas"} once this node's document has moved past
        revision `after`; None when `timeout` seconds pass first."""
        params: dict[str, Any] = {"after": after, "timeout": timeout, "deltas": "true"}
        response = self.http.get(f"/v1/nodes/{self.node}/desired", params=params)
        if response.status_code == 304:
            return None
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def report(
        self,
        applied: int,
        resources: dict[str, dict[str, str]],
        details: dict[str, Any],
        observed: dict[str, Any] | None = None,
    ) -> None:
        """`observed`: more fields of the report (a gateway's connections and daemons)."""
        body: dict[str, Any] = {**(observed or {}), "appliedRevision": applied, "resources": resources,
                                "details": details}  # fmt: skip
        response = self.heartbeat_http.post(f"/v1/nodes/{self.node}/status", json=body)
        response.raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.heartbeat_http.close()


class _Replicas:
    """An HTTP client of one controller replica at a time: one that cannot be reached passes the next request
    to the next replica (the caller retries after its backoff)."""

    def __init__(self, urls: list[str], make: Callable[[str], httpx.Client]) -> None:
        self.urls = urls
        self.make = make
        self.current = 0
        self.client = make(urls[0])

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._send("POST", path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.TransportError:
            if len(self.urls) > 1:
                self.client.close()
                self.current = (self.current + 1) % len(self.urls)
                self.client = self.make(self.urls[self.current])
            raise

    def close(self) -> None:
        self.client.close()
