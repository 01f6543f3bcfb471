"""Who is looking: the bearer token a person pasted on the login page, kept in an HttpOnly cookie (or an
Authorization header, for tools). Node tokens do not log in; a token revoked or unknown is the login page."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response

from isthmus.api.state import State
from isthmus.store.tokens import Principal

COOKIE = "isthmus_token"
LOGIN_BODY_BYTES = 4096  # a form with one token in it
COOKIE_SECONDS = 12 * 3600


def token_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return request.cookies.get(COOKIE, "")


def viewer_principal(st: State, token: str) -> Principal | None:
    """The operator or tenant a token names; None for anything else (unknown, revoked, a node's)."""
    if not token or len(token) > 512:
        return None
    found = st.principal(token)
    return found if found is not None and found.kind in ("operator", "subscription") else None


def login_token(body: bytes) -> str:
    """The token field of a url-encoded login form."""
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4).get("token", [""])
    return values[0].strip()


def remember(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=COOKIE_SECONDS, path="/ui", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui")
