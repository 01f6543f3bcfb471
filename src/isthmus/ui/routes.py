"""The dashboard's routes: the pages, the login, the static files and the live stream.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from isthmus import __version__
from isthmus.api.state import State
from isthmus.ui import session, views
from isthmus.ui.format import FILTERS

router = APIRouter(prefix="/ui", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"ui.css": "text/css", "ui.js": "text/javascript"}
LIVE_TICK_S = 0.5  # at the latest, the stream looks again this long after a write woke it (or nothing did)
LIVE_REFRESH_S = 5.0  # and re-renders anyway (lease ages, counters, liveness)
LIVE_STREAM_S = 600.0  # a stream ends after this; the browser reconnects (a token revoked is noticed sooner)
LIVE_KEEPALIVE_S = 15.0
LOGIN_PATH = "/ui/login"
LOGIN_BODY_S = 5.0

templates = Environment(loader=PackageLoader("isthmus.ui", "templates"), autoescape=select_autoescape(),
                        trim_blocks=True, lstrip_blocks=True)  # fmt: skip
templates.filters.update(FILTERS)
templates.globals["version"] = __version__


def _state(request: Request) -> State:
    st: State = request.app.state.isthmus
    return st


def _viewer(request: Request) -> views.Viewer | None:
    principal = session.viewer_principal(_state(request), session.token_of(request))
    return views.Viewer(principal) if principal is not None else None


# --- what each page shows: its template and context, or None (the 404 page) ------------------------------

Context = dict[str, Any]


def _fabric(request: Request, viewer: views.Viewer) -> Context | None:
    return {"fabric": views.fabric(_state(request))} if viewer.operator else None


def _connections(request: Request, viewer: views.Viewer) -> Context | None:
    st = _state(request)
    return {"connections": views.connections(st, viewer),
            "gateways": views.vnet_gateways(st, viewer)}  # fmt: skip


def _connection(request: Request, viewer: views.Viewer) -> Context | None:
    wanted = request.query_params.get("id", "")
    found = views.connection(_state(request), viewer, wanted) if wanted else None
    return {"connection": found} if found is not None else None


def _events(request: Request, viewer: views.Viewer) -> Context | None:
    st, query = _state(request), request.query_params
    chosen = {k: query.get(k, "").strip()[:200] for k in ("node", "pool", "gateway")}
    needles = [chosen["node"]] if chosen["node"] else []
    if chosen["gateway"]:
        needles += views.vnet_gateway_filters(st, chosen["gateway"])
    if chosen["pool"] and viewer.operator:
        needles += views.event_filters(st, chosen["pool"])
    return {"filters": chosen, **views.events(st, viewer, needles)}


def _placement(request: Request, viewer: views.Viewer) -> Context | None:
    if not viewer.operator:
        return None
    return {"placement": views.placement(_state(request), request.query_params.get("drain", "").strip()[:200])}


PAGES: dict[str, tuple[str, Callable[[Request, views.Viewer], Context | None]]] = {
    "fabric": ("Fabric", _fabric),
    "connections": ("Connections", _connections),
    "connection": ("Connection", _connection),
    "events": ("Events", _events),
    "placement": ("Placement", _placement),
}


# Only our own script and style, no framing, forms only to ourselves.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _render(name: str, **context: Any) -> str:
    return templates.get_template(name).render(**context)


def _html(html: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def not_found(request: Request, viewer: views.Viewer | None) -> HTMLResponse:
    """One page for whatever does not exist or is not the viewer's: it says nothing of which."""
    return _html(_render("not_found.html", viewer=viewer, page="", title="Not found"), 404)


def _to_login(request: Request) -> RedirectResponse:
    expired = "?expired=1" if session.token_of(request) else ""
    response = RedirectResponse(f"/ui/login{expired}", status_code=303)
    if expired:
        session.forget(response)
    return response


async def _page(request: Request, page: str) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    title, build = PAGES[page]
    started = time.perf_counter()
    context = await run_in_threadpool(build, request, viewer)
    if context is None:
        return not_found(request, viewer)
    live = f"/ui/live?page={page}" + (f"&{request.url.query}" if request.url.query else "")
    html = await run_in_threadpool(_render, f"{page}.html", viewer=viewer, page=page, title=title, live=live,
                                   query=request.query_params, **context)  # fmt: skip
    took = (time.perf_counter() - started) * 1000  # gathering and rendering, as bench/ui.py reads it
    return _html(html, headers={"Server-Timing": f"render;dur={took:.2f}"})


@router.get("/")
@router.get("")
async def home(request: Request) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    return RedirectResponse("/ui/fabric" if viewer.operator else "/ui/connections", status_code=303)


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    expired = request.query_params.get("expired") == "1"
    message = "Your session ended or its token is no longer valid: log in again." if expired else ""
    return _html(_render("login.html", viewer=None, page="login", title="Log in", message=message))


@router.post("/login")  # LOGIN_PATH: read here with its size capped, not authenticated by a header
async def login(request: Request) -> Response:
    token = session.login_token(await _login_form(request))
    principal = session.viewer_principal(_state(request), token)
    if principal is None:
        message = "That token is not valid here: use an operator token or a subscription's own token."
        html = _render("login.html", viewer=None, page="login", title="Log in", message=message)
        return _html(html, 401)
    response = RedirectResponse("/ui/", status_code=303)
    session.remember(response, request, token)
    return response


async def _login_form(request: Request) -> bytes:
    """The login form's body: at most LOGIN_BODY_BYTES, read within LOGIN_BODY_S (it has no token header, so
    nothing has vouched for its sender yet)."""
    body = b""

    async def read() -> None:
        nonlocal body
        async for chunk in request.stream():
            body += chunk
            if len(body) > session.LOGIN_BODY_BYTES:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), LOGIN_BODY_S)
    return body[: session.LOGIN_BODY_BYTES]


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    session.forget(response)
    return response


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    if name not in STATIC_FILES:
        return not_found(request, None)
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "max-age=300"})


def _event(name: str, html: str) -> str:
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in html.split("\n")) + "\n"


@router.get("/live")
async def live(request: Request) -> Response:
    """Server-sent events: the page's live part again whenever it changed; `login` when the token stopped
    working. The page says so when the stream drops, and the browser reconnects (after `retry` ms)."""
    page = request.query_params.get("page", "")
    viewer = _viewer(request)
    if page not in PAGES:
        return not_found(request, viewer)
    if viewer is None:
        return Response(status_code=401)
    st, build = _state(request), PAGES[page][1]

    def render() -> str | None:
        current = _viewer(request)  # a revoked token ends what it may see
        if current is None:
            return None
        context = build(request, current)
        return _render(f"{page}_live.html", viewer=current, query=request.query_params, **(context or {}))

    async def stream() -> AsyncIterator[str]:
        loop, woken = asyncio.get_running_loop(), asyncio.Event()

        def wake() -> None:  # from the thread that wrote
            with contextlib.suppress(RuntimeError):  # the stream's loop closed: nothing to wake
                loop.call_soon_threadsafe(woken.set)

        stop_listening = st.notifier.listen(wake)
        try:
            yield "retry: 1000\n\n"
            sent: str | None = None
            seen = -1
            rendered = spoke = time.monotonic()
            ends = time.monotonic() + LIVE_STREAM_S
            while time.monotonic() < ends and not await request.is_disconnected():
                # every write moves the revision, an event's included
                if st.notifier.revision != seen or time.monotonic() - rendered >= LIVE_REFRESH_S:
                    seen, rendered = st.notifier.revision, time.monotonic()
                    html = await run_in_threadpool(render)
                    if html is None:
                        yield "event: login\ndata: \n\n"
                        return
                    if html != sent:
                        sent, spoke = html, time.monotonic()
                        yield _event("main", html)
                if time.monotonic() - spoke >= LIVE_KEEPALIVE_S:
                    spoke = time.monotonic()
                    yield ": keep-alive\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), LIVE_TICK_S)
                woken.clear()
        finally:
            stop_listening()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip


def _add_pages() -> None:
    for page in PAGES:

        async def show(request: Request, page: str = page) -> Response:
            return await _page(request, page)

        router.add_api_route(f"/{page}", show, methods=["GET"], name=f"ui_{page}")


_add_pages()


@router.get("/{rest:path}")
async def unknown(rest: str, request: Request) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    return not_found(request, viewer)


def install(app: FastAPI) -> None:
    app.include_router(router)
