"""An agent's side of the agent protocol: register, long-poll the desired document (or the deltas to it),
report status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class ControllerClient:
    url: str
    token: str
    ca: str | None
    node: str
    role: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.ca if self.ca else True,
            timeout=httpx.Timeout(10.0, read=70.0),
        )
        # The heartbeat reports on a timer of its own, beside a long-poll that may be waiting: its own
        # connection, so neither waits for the other.
        self.heartbeat_http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.ca if self.ca else True,
            timeout=httpx.Timeout(5.0),
        )

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
