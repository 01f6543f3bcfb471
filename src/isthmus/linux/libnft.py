"""nft scripts run by libnftables inside this process: one context per network namespace, kept open.

Why not an `nft -f` process per script: starting one costs ~3 ms, and its exit waits for the kernel to free
what its transaction replaced (closing a netfilter socket flushes nf_tables' destroy work, an RCU grace
period: 10-15 ms on the development machine). An open context pays neither; the kernel frees in the
background. It is the same library the nft command runs, with the same syntax and the same transactions.

A context's socket holds its namespace alive, so `close(path)` comes before a namespace is deleted
(run.delete_netns does it); a namespace re-created at the same path is recognised by its inode and gets a
new context (and an empty `memo`). Each script runs with the calling thread inside the context's
namespace, as `nsenter` would.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

CLONE_NEWNET = 0x40000000
OUTPUT_TERSE = 1 << 11  # NFT_CTX_OUTPUT_TERSE: listings without set elements


class NftError(Exception):
    """nft refused a script; the message is its own."""


@dataclass
class _Context:
    handle: int  # struct nft_ctx *
    inode: tuple[int, int] | None  # (st_dev, st_ino) of its namespace; None: this process's own
    memo: dict[Any, Any] = field(default_factory=dict)  # the caller's notes on this namespace (see `memo`)


_contexts: dict[str | None, _Context] = {}
_lock = threading.Lock()


@cache
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libnftables.so.1")
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextmanager
def _inside(target: int | None) -> Iterator[None]:
    """The calling thread in the namespace open as `target` (None: where it is) for the block."""
    if target is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run(netns_path: str | None, script: str, *, terse: bool = False) -> str:
    """Run `script` (nft syntax, one transaction) in the namespace at `netns_path` (None: this process's);
    what nft printed. Raises NftError with nft's message when it refuses, FileNotFoundError when the
    namespace does not exist."""
    lib = _library()
    with _lock:
        target = os.open(netns_path, os.O_RDONLY) if netns_path else None
        try:
            context = _context(lib, netns_path, target)
            lib.nft_ctx_output_set_flags(context.handle, OUTPUT_TERSE if terse else 0)
            with _inside(target):
                code = lib.nft_run_cmd_from_buffer(context.handle, script.encode())
            output = (lib.nft_ctx_get_output_buffer(context.handle) or b"").decode()
            error = (lib.nft_ctx_get_error_buffer(context.handle) or b"").decode()
        finally:
            if target is not None:
                os.close(target)
    if code != 0:
        raise NftError(error.strip()[:1500] or f"nft failed ({code})")
    return output


def _context(lib: ctypes.CDLL, netns_path: str | None, target: int | None) -> _Context:
    inode = None
    if target is not None:
        status = os.fstat(target)
        inode = (status.st_dev, status.st_ino)
    context = _contexts.get(netns_path)
    if context is not None and context.inode == inode:
        return context
    if context is not None:  # the namespace was deleted and made again behind our back
        _free(lib, _contexts.pop(netns_path))
    with _inside(target):
        handle = lib.nft_ctx_new(0)  # opens its netlink socket in the namespace it is called in
    if not handle:
        raise NftError("libnftables: no context")
    lib.nft_ctx_buffer_output(handle)
    lib.nft_ctx_buffer_error(handle)
    context = _contexts[netns_path] = _Context(handle, inode)
    return context


def memo(netns_path: str | None) -> dict[Any, Any]:
    """A dict that lives as long as the context of the namespace at `netns_path`: notes about what this
    process put there, forgotten with the namespace (closed, or deleted and made again behind our back)."""
    with _lock:
        target = os.open(netns_path, os.O_RDONLY) if netns_path else None
        try:
            return _context(_library(), netns_path, target).memo
        finally:
            if target is not None:
                os.close(target)


def close(netns_path: str | None) -> None:
    """Close the context of the namespace at `netns_path`, if any (before the namespace is deleted)."""
    with _lock:
        context = _contexts.pop(netns_path, None)
        if context is not None:
            _free(_library(), context)


def _free(lib: ctypes.CDLL, context: _Context) -> None:
    lib.nft_ctx_free(context.handle)
