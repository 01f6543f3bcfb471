"""An agent's side of the agent protocol: register, long-poll the desired document, report status."""

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

    def register(self, address: str | None) -> None:
        response = self.http.post(f"/v1/nodes/{self.node}/register", json={"role": self.role, "address": address})
        response.raise_for_status()

    def desired(self, after: int, timeout: float) -> dict[str, Any] | None:
        """The document once the revision passes `after`, or None when `timeout` seconds pass first."""
        response = self.http.get(f"/v1/nodes/{self.node}/desired", params={"after": after, "timeout": timeout})
        if response.status_code == 304:
            return None
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def report(self, applied: int, resources: dict[str, dict[str, str]], details: dict[str, Any]) -> None:
        body = {"appliedRevision": applied, "resources": resources, "details": details}
        response = self.http.post(f"/v1/nodes/{self.node}/status", json=body)
        response.raise_for_status()

    def close(self) -> None:
        self.http.close()
