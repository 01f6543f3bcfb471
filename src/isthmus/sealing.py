"""Secrets sealed at rest: AES-256-GCM under the controller's secrets key, a file that lives with its PKI
material (`secrets.key` beside the CA, made by `isthmus pki init`).

A sealed value is `v1:KEYID:BASE64(nonce ‖ ciphertext ‖ tag)`; the associated data is what the secret
belongs to (a connection's store key), so a sealed value copied onto another resource does not open.

A rotation writes the new key to `secrets.key.new` first, re-seals the store in one transaction, then
moves the new file over the old: between the two, both files are read, so a crash at any point leaves a
store every reader can open. A running controller that meets a key id it does not hold reads the files
again, so it follows a rotation made by another process.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "secrets.key"
PENDING = ".new"  # suffix of the key a rotation is moving to, until the store is re-sealed under it
VERSION = "v1"
_HEADER = "isthmus-secrets-key"


class SealError(Exception):
    """A sealed value that no key at hand opens, or a key file that is not one."""


def pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING)


def write_key(path: Path) -> str:
    """A new random key in `path` (mode 0600, never overwriting); returns its id."""
    key_id = secrets.token_hex(4)
    text = f"{_HEADER} {VERSION} {key_id} {base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    return key_id


def read_key(path: Path) -> tuple[str, bytes]:
    try:
        header, version, key_id, encoded = path.read_text().split()
        key = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise SealError(f"{path} is not an isthmus secrets key") from None
    if header != _HEADER or version != VERSION or len(key) != 32:
        raise SealError(f"{path} is not an isthmus secrets key")
    return key_id, key


class Keyring:
    """The keys that open sealed values; new values are sealed under the current one."""

    def __init__(self, keys: dict[str, bytes], current: str, path: Path | None = None) -> None:
        self._keys = dict(keys)
        self.current = current
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """The key in `path`, and a rotation's pending key beside it if there is one (then current)."""
        key_id, key = read_key(path)
        keys, current = {key_id: key}, key_id
        if pending(path).exists():
            current, keys[current] = read_key(pending(path))
        return cls(keys, current, path)

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A key held in memory only (tests, or a controller told to keep no secrets across restarts)."""
        key_id = secrets.token_hex(4)
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def seal(self, clear: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._keys[self.current]).encrypt(nonce, clear.encode(), context.encode())
        return f"{VERSION}:{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        version, _, rest = sealed.partition(":")
        key_id, _, encoded = rest.partition(":")
        if version != VERSION or not key_id or not encoded:
            raise SealError("not a sealed value")
        key = self._keys.get(key_id) or self._reload(key_id)
        try:
            blob = base64.b64decode(encoded, validate=True)
            return AESGCM(key).decrypt(blob[:12], blob[12:], context.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError):
            raise SealError(f"the value sealed for {context} does not open under key {key_id}") from None

    def _reload(self, key_id: str) -> bytes:
        """A key sealed by another process (a rotation): read the key files again."""
        with self._lock:
            if key_id not in self._keys and self.path is not None and self.path.exists():
                fresh = Keyring.load(self.path)
                self._keys.update(fresh._keys)
                self.current = fresh.current
        if key_id not in self._keys:
            raise SealError(f"no secrets key {key_id} at hand")
        return self._keys[key_id]
