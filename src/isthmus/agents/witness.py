"""The MUXes as witnesses: may a gateway that cannot reach the controller keep answering for its VIPs?

A gateway whose lease is running out without an answer asks every MUX over the underlay (one UDP datagram
each): "do you still hear from the controller, and which of my VIPs do you route to me?" The MUX's route
for a VIP is the data plane's answer to "who is active", and a MUX renews a lease of its own with the
controller, so it can say how long ago the controller last answered it.

- Some MUX has heard the controller without a break since before this gateway's renewals started failing
  (or for CONFIRM_S since the controller came back while they still fail): the controller is alive and
  this gateway is cut off from it, so the controller is about to hand its VIPs to a standby: **fence**.
  (A MUX that hears a controller just back from an outage is no reason: the gateway renews again first.)
- No MUX answers: nothing reaches this gateway's VIPs anyway (all of their traffic comes through the
  MUXes), so fencing costs nothing: **fence** once the lease has ended.
- The MUXes answer and none has heard the controller lately: the controller is down, and nothing can move
  a VIP while it is: **hold** (established tunnels carry on; a controller outage costs the data plane nothing).

Standard library only (the watchdog imports it). Answers are not authenticated: the underlay is the
operator's own network, and the worst a forged answer can do is make a gateway hold or fence early.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from isthmus.agents.lease import LeaseClient, Refused, Unreachable

PORT = 4793
FRESH_S = 1.0  # a MUX that heard the controller less than this long ago vouches that it is alive
CONFIRM_S = 1.0  # renewals still failing this long after the controller came back for a MUX: cut off
SLACK_S = 0.25  # a MUX's last answer this close after the gateway's first failed renewal proves nothing
GAP_S = 0.5  # a MUX that did not hear the controller for this long starts a new streak
QUESTION_BYTES = 512


@dataclass(frozen=True)
class Testimony:
    mux: str
    controller_age: float | None  # seconds since the controller last answered the MUX (None: never)
    streak: float  # seconds the MUX has heard the controller without a break of GAP_S
    routes: tuple[str, ...]  # the asker's VIPs the MUX routes to the asker

    def hears(self) -> bool:
        return self.controller_age is not None and self.controller_age < FRESH_S


def verdict(testimonies: list[Testimony], failing_since: float, now: float, lease_left: float) -> str:
    """`fence` | `hold` | `wait` (renew, and ask again) for a gateway whose renewals fail since
    `failing_since` (its monotonic clock, as `now`)."""
    hearing = [t for t in testimonies if t.hears()]
    for t in hearing:
        assert t.controller_age is not None
        heard_at, streak_began = now - t.controller_age, now - t.streak
        # Heard well after this gateway's renewals began to fail: the controller lives, for the MUXes.
        if heard_at > failing_since + SLACK_S and (streak_began <= failing_since or now - streak_began >= CONFIRM_S):
            return "fence"
    if hearing or not testimonies:
        return "fence" if not testimonies and lease_left <= 0 else "wait"
    return "hold" if lease_left <= 0 else "wait"


def ask(muxes: Iterable[str], node: str, address: str | None, timeout: float = 0.1) -> list[Testimony]:
    """One question to each MUX (address, or address:port); the answers that come within `timeout`."""
    targets = []
    for mux in muxes:
        host, _, port = mux.partition(":")
        targets.append((host, int(port) if port else PORT))
    if not targets:
        return []
    nonce = os.urandom(8).hex()
    question = json.dumps({"node": node, "address": address, "nonce": nonce}).encode()
    answers: list[Testimony] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for target in targets:
            try:
                sock.sendto(question, target)
            except OSError:
                continue
        deadline = time.monotonic() + timeout
        while len(answers) < len(targets):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            try:
                data = sock.recv(65536)
                answer = json.loads(data)
            except (OSError, ValueError):
                continue
            if answer.get("nonce") != nonce:
                continue
            age = answer.get("controllerMs")
            routes = tuple(str(r) for r in answer.get("routes", ()))
            streak = float(answer.get("streakMs") or 0) / 1000
            answers.append(Testimony(str(answer.get("mux")), None if age is None else age / 1000, streak, routes))
    return answers


class WitnessServer:
    """The MUX's side: answers questions on `address`:PORT from a thread, until `close`."""

    def __init__(
        self,
        mux: str,
        address: str,
        contact: ControllerContact,
        routes_to: Callable[[str], list[str]],
        port: int = PORT,
    ) -> None:
        self.mux = mux
        self.contact = contact
        self.routes_to = routes_to
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.settimeout(0.5)  # so that `close` is seen within half a second
        self.answered = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="witness", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data, peer = self.sock.recvfrom(QUESTION_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                question = json.loads(data)
                asker = question.get("address")
                age = self.contact.age()
                answer = {
                    "mux": self.mux,
                    "nonce": str(question.get("nonce", ""))[:32],
                    "controllerMs": None if age is None else round(age * 1000),
                    "streakMs": round(self.contact.streak() * 1000),
                    "routes": self.routes_to(str(asker))[:64] if asker else [],
                }
                self.sock.sendto(json.dumps(answer).encode(), peer)
                self.answered += 1
            except (OSError, ValueError, AttributeError):
                continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


class ControllerContact:
    """A MUX's own lease with the controller, renewed from a thread: how long ago the controller answered."""

    def __init__(self, client: LeaseClient, interval: float = 0.1) -> None:
        self.client = client
        self.interval = interval
        self.last: float | None = None  # monotonic
        self.streak_began: float | None = None  # the first answer after a break of GAP_S or more
        self._epoch: int | None = None

    def age(self) -> float | None:
        return None if self.last is None else time.monotonic() - self.last

    def streak(self) -> float:
        """Seconds the controller has answered without a break (0 if it does not now)."""
        age = self.age()
        if age is None or age >= GAP_S or self.streak_began is None:
            return 0.0
        return time.monotonic() - self.streak_began

    def heard(self, at: float) -> None:
        if self.last is None or at - self.last >= GAP_S:
            self.streak_began = at
        self.last = at

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                granted = self.client.renew(self._epoch)
                self._epoch, self.interval = granted.epoch, granted.interval
                self.heard(began)
            except Refused:
                self._epoch = None
            except Unreachable:
                pass
            stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
