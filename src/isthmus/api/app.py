"""The controller's HTTP application: tenant ARM API, operator API and agent protocol.

What runs where: short reads (one resource, a token, /healthz) run on the event loop itself; writes run
in the one writer thread (`State.in_writer`; the store admits one writer at a time anyway, and a pool of
writers only convoyed on the GIL); lists, placement and IP flow verify run in worker threads. So no
request's CPU work stalls the others (measured in bench/api.py: /healthz while the largest VNet Azure
allows is PUT again and again). The long-poll waits without blocking, and compiles in a worker thread.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from isthmus import __version__
from isthmus.api import errors, metrics
from isthmus.api.admin import moves
from isthmus.api.admin.routes import router as admin_router
from isthmus.api.arm.bgp_actions import router as bgp_actions_router
from isthmus.api.arm.flow_verify import router as flow_verify_router
from isthmus.api.arm.kinds import KINDS
from isthmus.api.arm.routes import router as arm_router
from isthmus.api.arm.shared_key import router as shared_key_router
from isthmus.api.arm.vpn_actions import router as vpn_actions_router
from isthmus.api.deps import authenticate
from isthmus.api.errors import ArmError
from isthmus.api.lease_protocol import expire_forever, take_over
from isthmus.api.lease_protocol import router as lease_router
from isthmus.api.leases import Leases
from isthmus.api.nodes import router as nodes_router
from isthmus.api.placement import replan_logged
from isthmus.api.state import State
from isthmus.model.snapshot import FabricSettings
from isthmus.sealing import Keyring
from isthmus.store.sealed import seal_stored
from isthmus.ui import routes as ui

# ARM paths are case-insensitive in their fixed words; route matching here is not, so fold them by position
# (names the tenant chose keep their case).
_WORDS = {
    word.lower(): word
    for word in (
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.Network",
        "locations",
        "operations",
        "operationResults",
        "sharedkey",
        *(kind.collection for kind in KINDS),
        *(child.collection for kind in KINDS for child in kind.children),
    )
}


def canonical_path(path: str) -> str:
    parts = path.split("/")
    # /subscriptions/S/resourceGroups/G/providers/Microsoft.Network/C/N/CC/CN, or /subscriptions/S/providers/...
    fixed = (1, 3, 5, 6, 7, 9) if len(parts) > 3 and parts[3].lower() == "resourcegroups" else (1, 3, 4, 5, 7)
    for index in fixed:
        if index < len(parts):
            parts[index] = _WORDS.get(parts[index].lower(), parts[index])
    if len(parts) == 4 and parts[3] == "resourceGroups":
        parts[3] = "resourcegroups"  # the resource group list keeps Azure's lower-case spelling
    return "/".join(parts)


class CanonicalPaths:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].lower().startswith("/subscriptions"):
            scope = dict(scope)
            scope["path"] = canonical_path(scope["path"])
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


class AuthenticatedBodies:
    """A request with a body is authenticated before its body is read: handlers read the body before their
    dependencies run, so without this a caller with no token could hold a connection for the whole body
    time limit (and the body size cap) by sending slowly. Refused with the ARM 401 and the connection
    closed, the body unread. Every route that takes a body needs a token anyway."""

    def __init__(self, app: Any, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != ui.LOGIN_PATH:  # the login form carries its token
            headers = dict(scope["headers"])
            if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
                try:
                    authenticate(self.state, headers.get(b"authorization", b"").decode("latin-1"))
                except ArmError as refused:
                    response = JSONResponse(refused.body(), refused.status, headers={"Connection": "close"})
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(
    engine: Engine,
    *,
    page_size: int = 100,
    settings: FabricSettings | None = None,
    secrets_key: Path | None = None,
    leases: Leases | None = None,
    name: str = "controller",
) -> FastAPI:
    """The application over `engine`. `secrets_key` is the key file that seals pre-shared keys at rest
        (isthmus.sealing; None: a key held in memory only, for tests). Clear keys a store from before sealing
        holds are sealed here, at start-up, and a key that does not open the stored ones stops it here. `name`:
    this controller replica's (api/replica.py: on PostgreSQL several replicas share the store, one leads)."""
    keyring = Keyring.load(secrets_key) if secrets_key is not None else Keyring.ephemeral()
    seal_stored(engine, keyring)
    state = State(engine=engine, page_size=page_size, settings=settings or FabricSettings(), keyring=keyring,
                  leases=leases or Leases(), name=name)  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Start-up objects (models, routes, compiled statements) need no cyclic GC scans; fewer, larger
        # young-generation passes keep collection pauses out of request latency.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        state.notifier.bind(asyncio.get_running_loop())
        state.notifier.revision = state.revision()
        replan_logged(state, "start-up")  # a store from before sticky placement gets its assignment stored
        # The leader (at once on SQLite) holds the stored leases; every replica's long-polls wake for every
        # replica's writes.
        state.replica.start(lambda: take_over(state), state.leases.clear, state.notifier.notify)
        expiry = asyncio.create_task(expire_forever(state), name="lease-expiry")
        moves.start(_app, state)  # the drainer: moves Draining gateways' load (resumes stored drains)
        yield
        expiry.cancel()
        state.replica.stop()
        state.writer.shutdown(wait=True)

    app = FastAPI(
        title="isthmus",
        version=__version__,
        description="Tenant API (Microsoft.Network subset), operator API and agent protocol of isthmus.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a public CDN (third-party code in an admin
        # page, and broken offline) and no installed package ships those assets: only the schema is served.
        docs_url=None,
        redoc_url=None,
    )
    app.state.isthmus = state
    errors.install(app)
    app.include_router(arm_router)
    app.include_router(flow_verify_router)
    app.include_router(shared_key_router)
    app.include_router(vpn_actions_router)
    app.include_router(bgp_actions_router)
    app.include_router(admin_router)
    app.include_router(nodes_router)
    app.include_router(lease_router)
    app.include_router(metrics.router)
    ui.install(app)
    app.state.metrics, latency = metrics.registry(state)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "revision": state.revision(), "replica": state.name, "leader": state.replica.leading,
                "leasesRenewed": state.leases.renewed()}  # fmt: skip

    app.add_middleware(metrics.RequestTimer, histogram=latency)
    app.add_middleware(AuthenticatedBodies, state=state)
    app.add_middleware(CanonicalPaths)
    return app
