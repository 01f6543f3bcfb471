"""The controller's listener against clients that hold memory or time (issue 10): each attack is made on a
real controller over HTTPS, with raw sockets, and every wait is bounded. A client without a valid token is
refused before it may send a body at all, so only a tenant can send a slow one (and is cut at the limit).

The four timed attacks (an idle TLS connection, TCP without TLS, half a header, a slow body) run side by side
from the module's start, so the module takes about REQUEST_BODY_SECONDS rather than the sum of the limits.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from isthmus.model import limits
from tests.security.conftest import (
    TENANT,
    Closed,
    Served,
    address,
    tcp,
    tls,
    vm_rss_kb,
)

SLACK_S = 5.0  # generous: the controller shares two cores with other tests
VNET = f"/subscriptions/{TENANT}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v1"


def put_head(served: Served, framing: bytes, authorization: bytes | None = None) -> bytes:
    """The head of a PUT of VNET whose body is framed by `framing` (a Content-Length or chunked), with the
    tenant's token unless `authorization` gives the header line (b"": none)."""
    if authorization is None:
        authorization = f"Authorization: Bearer {served.token}\r\n".encode()
    return (
        f"PUT {VNET}?api-version=2026-03-01 HTTP/1.1\r\nHost: localhost\r\n".encode()
        + authorization
        + b"Content-Type: application/json\r\n"
        + framing
        + b"\r\n\r\n"
    )


def idle_tls(served: Served) -> Closed:
    conn = tls(served)
    return conn.until_closed(time.monotonic(), limits.REQUEST_HEAD_SECONDS + SLACK_S)


def no_tls(served: Served) -> Closed:
    conn = tcp(served)
    return conn.until_closed(time.monotonic(), limits.TLS_HANDSHAKE_SECONDS + SLACK_S)


def half_a_header(served: Served) -> Closed:
    conn = tls(served)
    since = time.monotonic()
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Half: abc")
    return conn.until_closed(since, limits.REQUEST_HEAD_SECONDS + SLACK_S)


def slow_body(served: Served) -> Closed:
    """A tenant's PUT whose body comes a byte a second (it would take 1,000 s)."""
    conn = tls(served)
    conn.sendall(put_head(served, b"Content-Length: 1000"))
    since = time.monotonic()
    limit = limits.REQUEST_BODY_SECONDS + SLACK_S
    while time.monotonic() < since + limit and not conn.answered():
        try:
            conn.sendall(b" ")
        except OSError:
            break
        time.sleep(1.0)
    return conn.until_closed(since, limit)


@pytest.fixture(scope="module", autouse=True)
def timed(served: Served) -> Iterator[dict[str, Future[Closed]]]:
    attacks: dict[str, Callable[[Served], Closed]] = {
        "idle_tls": idle_tls,
        "no_tls": no_tls,
        "half_a_header": half_a_header,
        "slow_body": slow_body,
    }
    with ThreadPoolExecutor(max_workers=len(attacks)) as pool:
        yield {name: pool.submit(attack, served) for name, attack in attacks.items()}


def result(timed: dict[str, Future[Closed]], name: str) -> Closed:
    return timed[name].result(timeout=limits.REQUEST_BODY_SECONDS + 2 * SLACK_S)


def test_a_1_mb_header_gets_an_arm_431_and_the_connection_closes(served: Served) -> None:
    conn = tls(served)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n"
    since = time.monotonic()
    conn.send_until_answered(request)
    closed = conn.until_closed(since, SLACK_S)
    assert closed.status == 431
    assert closed.error()["code"] == "RequestHeaderFieldsTooLarge"


def test_many_header_fields_get_431(served: Served) -> None:
    conn = tls(served)
    fields = b"".join(b"X-%d: a\r\n" % i for i in range(limits.REQUEST_HEADER_COUNT + 1))
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n")
    closed = conn.until_closed(time.monotonic(), SLACK_S)
    assert (closed.status, closed.error()["code"]) == (431, "RequestHeaderFieldsTooLarge")


def test_an_over_long_url_gets_an_arm_414(served: Served) -> None:
    conn = tls(served)
    path = b"/healthz?pad=" + b"a" * (limits.REQUEST_URL_BYTES + 1)
    since = time.monotonic()
    conn.send_until_answered(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    closed = conn.until_closed(since, SLACK_S)
    assert (closed.status, closed.error()["code"]) == (414, "RequestUriTooLong")


def test_a_content_length_over_the_cap_gets_413_before_any_body(served: Served) -> None:
    conn = tls(served)
    since = time.monotonic()
    conn.sendall(put_head(served, b"Content-Length: %d" % (limits.REQUEST_BODY_BYTES + 1), b""))
    closed = conn.until_closed(since, SLACK_S)  # no byte of the body was sent
    assert (closed.status, closed.error()["code"]) == (413, "RequestContentTooLarge")


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(b"", "AuthenticationFailed"), (b"Authorization: Bearer ism_0_forged\r\n", "InvalidAuthenticationToken")],
)
def test_a_body_without_a_valid_token_is_refused_before_it_is_read(
    served: Served, authorization: bytes, code: str
) -> None:
    conn = tls(served)
    since = time.monotonic()
    conn.sendall(put_head(served, b"Content-Length: 1000", authorization))
    closed = conn.until_closed(since, SLACK_S)  # no byte of the body is ever sent
    assert (closed.status, closed.error()["code"]) == (401, code)
    assert closed.after_s < SLACK_S


def test_a_chunked_body_over_the_cap_is_cut_with_413(served: Served) -> None:
    conn = tls(served)
    since = time.monotonic()
    conn.sendall(put_head(served, b"Transfer-Encoding: chunked"))
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    conn.send_until_answered(chunk * (2 * limits.REQUEST_BODY_BYTES // 0x10000), chunk=len(chunk))
    closed = conn.until_closed(since, 4 * SLACK_S)
    assert (closed.status, closed.error()["code"]) == (413, "RequestContentTooLarge")


def test_malformed_http_gets_an_arm_400(served: Served) -> None:
    conn = tls(served)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost localhost\r\n\r\n")
    closed = conn.until_closed(time.monotonic(), SLACK_S)
    assert (closed.status, closed.error()["code"]) == (400, "InvalidRequestFormat")


def test_a_keep_alive_connection_serves_a_second_request(served: Served) -> None:
    host, port = address(served)
    connection = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=str(served.ca)))
    answers = []
    authorization = {"Authorization": f"Bearer {served.token}"}
    for method, path in (("GET", "/healthz"), ("GET", "/healthz"), ("PUT", f"{VNET}?api-version=2026-03-01")):
        connection.request(method, path, body=b"{}" if method == "PUT" else None, headers=authorization)
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read())))
        if len(answers) == 1:
            sock = connection.sock
            time.sleep(1.0)  # idle between requests, well within the limit
    assert connection.sock is sock  # the same connection all along
    connection.close()
    assert [status for status, _body in answers[:2]] == [200, 200]
    assert 400 <= answers[2][0] < 500
    assert answers[2][1]["error"]["code"]  # the application's own answer, ARM-shaped


def test_docs_pages_are_gone_and_the_schema_stays(served: Served) -> None:
    with httpx.Client(base_url=served.url, verify=str(served.ca), timeout=10) as client:
        assert client.get("/openapi.json").status_code == 200
        for page in ("/docs", "/redoc"):
            response = client.get(page)
            assert response.status_code == 404 and response.json()["error"]["code"] == "NotFound"


def test_unfinished_headers_hold_little_memory(served: Served) -> None:
    """Five clients push header bytes as fast as they are taken, reconnecting when cut, for 3 s."""
    before = vm_rss_kb(served.pid)
    peak = [before]
    stop = time.monotonic() + 3.0
    line = b"X-Pad: " + b"a" * 16 * 1024 + b"\r\n"

    def push() -> None:
        while time.monotonic() < stop:
            conn = tls(served, timeout=5)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            try:
                while time.monotonic() < stop and not conn.answered():
                    conn.sendall(line)
            except OSError:
                pass
            conn.sock.close()

    threads = [threading.Thread(target=push) for _ in range(5)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) and time.monotonic() < stop + 10:
        peak.append(vm_rss_kb(served.pid))
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=10)
    growth_mb = (max(peak) - before) / 1024
    assert growth_mb < 40, f"controller RSS grew {growth_mb:.1f} MB"


def test_an_idle_tls_connection_is_closed(timed: dict[str, Future[Closed]]) -> None:
    closed = result(timed, "idle_tls")
    assert closed.data == b""  # nothing to answer: simply closed
    assert closed.after_s < limits.REQUEST_HEAD_SECONDS + SLACK_S


def test_a_connection_that_never_starts_tls_is_closed(timed: dict[str, Future[Closed]]) -> None:
    closed = result(timed, "no_tls")
    assert closed.data == b""
    assert closed.after_s < limits.TLS_HANDSHAKE_SECONDS + SLACK_S


def test_half_a_header_then_silence_is_cut_with_408(timed: dict[str, Future[Closed]]) -> None:
    closed = result(timed, "half_a_header")
    assert (closed.status, closed.error()["code"]) == (408, "RequestTimeout")


def test_a_slow_body_is_cut(timed: dict[str, Future[Closed]]) -> None:
    closed = result(timed, "slow_body")
    assert (closed.status, closed.error()["code"]) == (408, "RequestTimeout")
