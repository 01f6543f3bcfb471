"""Conditional writes, as ARM has them: If-Match and If-None-Match on every PUT, PATCH and DELETE."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Header

from isthmus.api.errors import ArmError

ETAG_LENGTH = 256


@dataclass(frozen=True)
class Preconditions:
    """If-Match / If-None-Match of a write: `*` or one etag (ARM's W/"…" form, compared as sent)."""

    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, etag: str | None) -> None:
        """`etag` is the current one, None when the target does not exist. 412 with an ARM body if unmet."""
        if self.if_match is not None and etag is None:
            raise ArmError(412, "PreconditionFailed", "If-Match was given but the resource does not exist.")
        if self.if_match not in (None, "*") and self.if_match != etag:
            raise ArmError(412, "PreconditionFailed", "The If-Match etag does not match the resource's etag.")
        if self.if_none_match == "*" and etag is not None:
            raise ArmError(412, "PreconditionFailed", "If-None-Match '*' but the resource exists.")
        if self.if_none_match not in (None, "*") and self.if_none_match == etag:
            raise ArmError(412, "PreconditionFailed", "The If-None-Match etag matches the resource's etag.")


ALWAYS = Preconditions()


async def preconditions(
    if_match: str | None = Header(default=None, max_length=ETAG_LENGTH),
    if_none_match: str | None = Header(default=None, max_length=ETAG_LENGTH),
) -> Preconditions:
    """The request's conditions (a FastAPI dependency)."""
    return Preconditions(if_match, if_none_match)
