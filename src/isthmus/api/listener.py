"""The controller's HTTP listener: uvicorn's httptools protocol with bounds on what a client may hold.

Before a request is authenticated the client controls every byte and every second, so the listener bounds
both (model/limits.py): the request line and headers (size, count, URL length, time from the connection or
the previous response), the body (size, time from the end of the headers) and the TLS handshake. Whatever
the listener answers itself is an ARM error body; a connection that sent nothing is simply closed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from asyncio import TimerHandle
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from isthmus.api.errors import ArmError
from isthmus.model import limits


def _too_large() -> ArmError:  # Azure Resource Manager's own code and wording for a body over 4 MB
    return ArmError(413, "RequestContentTooLarge", "The request content size exceeds the maximum size of 4 MB.")


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the protocol answers with `error` and closes."""

    def __init__(self, error: ArmError) -> None:
        super().__init__(error.message)
        self.error = error


class BoundedHttpProtocol(HttpToolsProtocol):
    """One connection. Its phases: waiting for a head (timer: REQUEST_HEAD_SECONDS, armed once the previous
    request was both read and answered), reading a body (timer: REQUEST_BODY_SECONDS), the application's
    turn (no timer: long-polls wait here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: TimerHandle | None = None
        self._awaiting_head = True
        self._head_begun = False  # a byte of the awaited request arrived (a timeout then answers 408)
        self._head_bytes = 0  # bytes fed while the awaited head was still incomplete
        self._header_bytes = 0
        self._header_count = 0
        self._body_bytes = 0
        self._messages = 0  # requests read completely

    # --- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if not self._awaiting_head:
            self._feed(data)
            return
        # Feed no more than the head may still take: if the head is still incomplete then, it is too large
        # (and the parser, which buffers a header's name and value until they end, never held more).
        room = limits.REQUEST_HEAD_BYTES - self._head_bytes
        view = memoryview(data)  # slices without copies (the parser reads any buffer)
        messages = self._messages
        if not self._feed(view[:room]):
            return
        if self._awaiting_head and messages == self._messages:
            self._head_bytes += min(room, len(data))
            if len(data) > room:
                self._refuse(self._head_too_large())
                return
        if len(data) > room:
            self._feed(view[room:])

    # --- parser callbacks --------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > limits.REQUEST_URL_BYTES:
            raise _Refused(
                ArmError(414, "RequestUriTooLong", f"The request URL is longer than {limits.REQUEST_URL_BYTES} bytes.")
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        self._header_count += 1
        if self._header_count > limits.REQUEST_HEADER_COUNT:
            raise _Refused(
                ArmError(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    f"The request has more than {limits.REQUEST_HEADER_COUNT} header fields.",
                )
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_timer()
        if len(self.url) + self._header_bytes > limits.REQUEST_HEAD_BYTES:
            raise _Refused(self._head_too_large())
        length = next((value for name, value in self.headers if name == b"content-length"), b"0")
        if int(length) > limits.REQUEST_BODY_BYTES:  # the parser has checked it is a number
            raise _Refused(_too_large())
        self._awaiting_head = False
        self._body_bytes = 0
        super().on_headers_complete()
        self._timer = self.loop.call_later(limits.REQUEST_BODY_SECONDS, self._body_timeout)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > limits.REQUEST_BODY_BYTES:  # a chunked body (a Content-Length was checked)
            raise _Refused(_too_large())
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()
        self._messages += 1
        self._awaiting_head, self._head_begun = True, False
        self._head_bytes = self._header_bytes = self._header_count = 0
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()

    # --- uvicorn's own answers -----------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        self._refuse(ArmError(400, "InvalidRequestFormat", "The request is not valid HTTP/1.1."))

    # --- the listener's part -------------------------------------------------------------------------------
    def _feed(self, data: bytes | memoryview) -> bool:
        """Parse `data`; False if the connection was refused (and is closing)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            refused = error.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.error)
            else:  # a callback found the request malformed (its URL, say)
                self.send_400_response(str(error))
            return False
        except httptools.HttpParserUpgrade:
            # No protocol to upgrade to (websockets are off): the request was answered as plain HTTP, and the
            # parser reads nothing after it, so the connection ends with its response.
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
            else:
                self.transport.close()
            return False
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return False
        return True

    def _arm_head_timer(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if self._awaiting_head and waiting and self._timer is None and not self.transport.is_closing():
            self._timer = self.loop.call_later(limits.REQUEST_HEAD_SECONDS, self._head_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        if not self._head_begun:
            self.transport.close()
            return
        seconds = limits.REQUEST_HEAD_SECONDS
        self._refuse(ArmError(408, "RequestTimeout", f"The request headers did not arrive within {seconds:g} s."))

    def _body_timeout(self) -> None:
        self._timer = None
        seconds = limits.REQUEST_BODY_SECONDS
        self._refuse(ArmError(408, "RequestTimeout", f"The request body did not arrive within {seconds:g} s."))

    def _head_too_large(self) -> ArmError:
        return ArmError(
            431,
            "RequestHeaderFieldsTooLarge",
            f"The request line and headers are longer than {limits.REQUEST_HEAD_BYTES} bytes.",
        )

    def _refuse(self, error: ArmError) -> None:
        """Answer `error` (unless a response to this request has begun) and close the connection."""
        self._cancel_timer()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True  # the application, if it waits for the body, is told the client left
            cycle.message_event.set()
        elif cycle is not None and not self._awaiting_head:  # answered already, before its body ended
            self.transport.close()
            return
        body = json.dumps(error.body(), separators=(",", ":")).encode()
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json; charset=utf-8\r\n", b"content-length: %d\r\n" % len(body)]
        head += [b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


# The TLS layer reads whatever the kernel has queued into a buffer of its own (256 KB each connection), and
# the pages it touches stay with the connection: a client pushing bytes as fast as they are taken would hold
# that much. A fixed receive buffer bounds each read (the kernel doubles the figure); requests are small, and
# answers (documents of several MB to agents) go through the send buffer, which keeps its autotuning.
# Measured with 50 such clients on a fresh controller: peak RSS growth 27 MB without it, 19 MB with it (most
# of it the allocator's one-time high-water mark: a second flood adds 8 MB without it, 0-3 MB with it).
RECEIVE_BUFFER_BYTES = 64 * 1024


class BoundedServer(uvicorn.Server):
    """uvicorn's Server, whose listening sockets also bound the TLS handshake and shutdown.

    uvicorn passes no `ssl_handshake_timeout` to `create_server` (asyncio's default is 60 s, during which a
    client that never completes the handshake holds the connection), so this serves the sockets itself:
    uvicorn's start-up runs with no socket, then each socket is served with the same protocol factory and
    the timeouts (and the receive buffer) added. uvicorn's shutdown closes these servers as its own.
    `on_exit` runs as soon as a signal asks it to stop (before the graceful shutdown's wait)."""

    def __init__(self, config: uvicorn.Config, on_exit: Any = None) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        config = self.config
        tls: dict[str, Any] = {}
        if config.ssl is not None:
            tls = {
                "ssl": config.ssl,
                "ssl_handshake_timeout": limits.TLS_HANDSHAKE_SECONDS,
                "ssl_shutdown_timeout": limits.TLS_SHUTDOWN_SECONDS,
            }

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        loop = asyncio.get_running_loop()
        for sock in sockets or []:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)  # accepted sockets inherit it
            self.servers.append(await loop.create_server(protocol, sock=sock, backlog=config.backlog, **tls))


def serve(app: Any, sockets: list[socket.socket], *, log_level: str, tls: tuple[str, str] | None) -> None:
    """Serve `app` on `sockets` (HTTPS with tls = (certificate file, key file)) until a signal stops it."""
    certificate, key = tls if tls is not None else (None, None)
    config = uvicorn.Config(
        app,
        http=BoundedHttpProtocol,
        ws="none",
        log_level=log_level,
        timeout_keep_alive=int(limits.REQUEST_HEAD_SECONDS),
        # Long-polls and idle keep-alive connections would hold a graceful shutdown open: bound it.
        timeout_graceful_shutdown=2,
        ssl_certfile=certificate,
        ssl_keyfile=key,
    )
    # A controller on its way out judges no lease: it would fail gateways it merely stopped hearing.
    leases = getattr(getattr(getattr(app, "state", None), "isthmus", None), "leases", None)
    BoundedServer(config, on_exit=leases.stop if leases is not None else None).run(sockets=sockets)
