"""ARM error bodies: every 4xx (and any unexpected failure) is {"error": {"code", "message", "target"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("isthmus.api")


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        # (kind, subject, message, details) of an event for the operator about this refusal: written apart
        # from the refused request, which changes nothing (api/arm/routes.py)
        self.operator_event: tuple[str, str, str, dict[str, Any]] | None = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def bad_request(code: str, message: str, target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target)


def conflict(code: str, message: str, target: str | None = None) -> ArmError:
    return ArmError(409, code, message, target)


def not_found(code: str, message: str, target: str | None = None) -> ArmError:
    return ArmError(404, code, message, target)


def json_path(loc: tuple[int | str, ...]) -> str:
    """('properties', 'subnets', 0, 'name') -> 'properties.subnets[0].name'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def install(app: FastAPI) -> None:
    @app.exception_handler(ArmError)
    async def _arm(_request: Request, exc: ArmError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        code = "MissingApiVersionParameter" if loc == ("api-version",) else "InvalidRequestFormat"
        error = ArmError(400, code, f"{json_path(loc) or 'request'}: {first.get('msg')}", json_path(loc))
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed", 401: "AuthenticationFailed"}
        code = codes.get(exc.status_code, "BadRequest")
        error = ArmError(exc.status_code, code, str(exc.detail))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        error = ArmError(500, "InternalServerError", "The server could not complete the request.")
        return JSONResponse(error.body(), status_code=500)
