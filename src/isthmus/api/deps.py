"""Request plumbing shared by the routers: the caller's identity, api-version, transactions."""

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Depends, Query, Request

from isthmus.api.errors import ArmError, bad_request, not_found
from isthmus.api.placement import replan_logged
from isthmus.api.state import State
from isthmus.model.ids import SUBSCRIPTION_ID
from isthmus.model.placement import INPUTS
from isthmus.store.db import reading, writing
from isthmus.store.repo import Tx
from isthmus.store.tokens import Principal

# Microsoft.Network api-versions accepted: those azure-mgmt-network sends, current and recent.
NETWORK_API_VERSIONS = frozenset(
    {
        "2022-07-01",
        "2022-09-01",
        "2022-11-01",
        "2023-02-01",
        "2023-04-01",
        "2023-05-01",
        "2023-06-01",
        "2023-09-01",
        "2023-11-01",
        "2024-01-01",
        "2024-03-01",
        "2024-05-01",
        "2024-07-01",
        "2024-10-01",
        "2025-01-01",
        "2025-03-01",
        "2025-05-01",
        "2025-07-01",
        "2025-10-01",
        "2026-01-01",
        "2026-03-01",
    }
)
RESOURCES_API_VERSIONS = frozenset(
    {
        "2021-04-01",
        "2022-12-01",
        "2022-09-01",
        "2023-07-01",
        "2024-03-01",
        "2024-07-01",
        "2024-11-01",
        "2025-03-01",
        "2025-04-01",
    }
)


async def state(request: Request) -> State:
    value: State = request.app.state.isthmus
    return value


def authenticate(st: State, header: str) -> Principal:
    """The caller an Authorization header names, or the ARM 401."""
    scheme, _, secret = header.partition(" ")
    if not header:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    found = st.principal(secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
    if found is None:
        raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
    return found


async def principal(request: Request, st: State = Depends(state)) -> Principal:
    return authenticate(st, request.headers.get("authorization", ""))


async def tenant(subscriptionId: str, who: Principal = Depends(principal)) -> Principal:
    """A tenant reaches only its own subscription; any other is reported as not existing. Operator and node
    tokens are refused outright (an operator token reaches subscriptions only if created for that)."""
    if not SUBSCRIPTION_ID.match(subscriptionId):
        raise bad_request("InvalidSubscriptionId", f"The provided subscription identifier '{subscriptionId}' is "
                          "malformed or invalid.")  # fmt: skip
    if who.may_use_subscription(subscriptionId):
        return who
    if who.kind == "subscription":
        raise not_found("SubscriptionNotFound", f"The subscription '{subscriptionId}' could not be found.")
    raise ArmError(
        403,
        "AuthorizationFailed",
        f"A {who.kind} token may not use tenant subscriptions: use the subscription's own token, or an operator "
        "token created with --all-subscriptions.",
    )


async def operator(who: Principal = Depends(principal)) -> Principal:
    if who.kind != "operator":
        raise ArmError(403, "AuthorizationFailed", "This operation needs an operator token.")
    return who


async def network_api_version(api_version: str = Query(alias="api-version")) -> str:
    return _checked(api_version, NETWORK_API_VERSIONS, "Microsoft.Network")


async def resources_api_version(api_version: str = Query(alias="api-version")) -> str:
    return _checked(api_version, RESOURCES_API_VERSIONS, "Microsoft.Resources")


def _checked(version: str, allowed: frozenset[str], namespace: str) -> str:
    if version not in allowed:
        raise bad_request(
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions for {namespace} are "
            f"'{', '.join(sorted(allowed, reverse=True))}'.",
            "api-version",
        )
    return version


@contextmanager
def write(st: State) -> Iterator[Tx]:
    """A write transaction; agents long-polling are woken once it has committed. A write that can move
    placement (VNet gateways, connections, gateways, pools, gateway states) is followed by planning."""
    with writing(st.engine) as conn:
        tx = Tx(conn, st.keyring)
        yield tx
    if tx.changed:
        st.notifier.notify(tx.revision)
        if tx.touched & INPUTS:
            replan_logged(st, f"revision {tx.revision}")


@contextmanager
def read(st: State) -> Iterator[Tx]:
    with reading(st.engine) as conn:
        yield Tx(conn, st.keyring)
