"""What the cache writes: keys that are keyed hashes, values sealed with AES-GCM.

- A key is `<prefix>cache:<kind>:<hash>`, the hash an HMAC-SHA256 under the cache's hash key
  over the kind and the parts, each length-prefixed (so `("ab", "c")` and `("a", "bc")` differ).
  No national id, name or address is in a key, and without the hash key none can be tried.
- A value is sealed under the keyring's current key with a random 96-bit nonce; beside the
  ciphertext are the key's id (any key of the ring opens it, so keys rotate) and the time the data
  was fetched (so its age is known). The full key and that header are the associated data: a value
  copied under another key, or with another time, does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: A kind names a kind of data (`patient`, `services`) in keys and logs: short, lower case.
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: A key id is written beside each value, so it is short and plain.
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY_BYTES = 32  # AES-256
HASH_KEY_MIN_BYTES = 32
NONCE_BYTES = 12  # 96 bits, as GCM wants

_FORMAT = 1
_TIME = struct.Struct(">d")


def encode_parts(kind: str, parts: Sequence[str | bytes]) -> bytes:
    """The kind and the parts, each as its length (4 bytes) and its UTF-8 bytes: unambiguous."""
    out = bytearray()
    for part in (kind, *parts):
        raw = part.encode() if isinstance(part, str) else bytes(part)
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


@dataclass(frozen=True, repr=False)
class Keyring:
    """AES-256 keys by id; `current` seals, any of them opens."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"the current key id {self.current!r} is not in the keyring")
        for key_id, key in self.keys.items():
            if not KEY_ID_PATTERN.match(key_id):
                raise ValueError(f"cache key id {key_id!r} must match {KEY_ID_PATTERN.pattern}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"cache key {key_id!r} must be {KEY_BYTES} bytes, not {len(key)}")

    def __repr__(self) -> str:  # never the keys
        return f"Keyring(ids={sorted(self.keys)}, current={self.current!r})"


class Unreadable(Exception):
    """A stored value that does not open: `reason` says why, without any of its content."""

    def __init__(self, reason: str, key_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class Opened:
    value: bytes
    fetched_at: float  # seconds since the epoch
    key_id: str


class Sealer:
    """Names keys and seals and opens values, with a hash key and a keyring."""

    def __init__(self, hash_key: bytes, keyring: Keyring) -> None:
        if len(hash_key) < HASH_KEY_MIN_BYTES:
            raise ValueError(f"the hash key must be at least {HASH_KEY_MIN_BYTES} bytes")
        self._hash_key = hash_key
        self._keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    def __repr__(self) -> str:
        return f"Sealer({self._keyring!r})"

    def digest(self, kind: str, parts: Sequence[str | bytes]) -> str:
        """The keyed hash (hex) that stands for (kind, parts) in every key."""
        if not KIND_PATTERN.match(kind):
            raise ValueError(f"cache kind {kind!r} must match {KIND_PATTERN.pattern}")
        return hmac.new(self._hash_key, encode_parts(kind, parts), hashlib.sha256).hexdigest()

    def seal(self, key: str, value: bytes, fetched_at: float) -> bytes:
        key_id = self._keyring.current
        header = (
            bytes([_FORMAT, len(key_id)])
            + key_id.encode()
            + _TIME.pack(fetched_at)
            + os.urandom(NONCE_BYTES)
        )
        nonce = header[-NONCE_BYTES:]
        return header + self._ciphers[key_id].encrypt(nonce, value, key.encode() + header)

    def open(self, key: str, sealed: bytes) -> Opened:
        """The value stored under `key`, or `Unreadable`."""
        if len(sealed) < 2 or sealed[0] != _FORMAT:
            raise Unreadable("unknown format")
        end_id = 2 + sealed[1]
        key_id = sealed[2:end_id].decode(errors="replace")
        end_header = end_id + _TIME.size + NONCE_BYTES
        if len(sealed) < end_header + 16:
            raise Unreadable("truncated", key_id)
        cipher = self._ciphers.get(key_id)
        if cipher is None:  # the id is only logged when it has the form of one
            raise Unreadable("unknown key id", key_id if KEY_ID_PATTERN.match(key_id) else "?")
        header = sealed[:end_header]
        try:
            value = cipher.decrypt(
                header[-NONCE_BYTES:], sealed[end_header:], key.encode() + header
            )
        except InvalidTag:
            raise Unreadable("authentication failed", key_id) from None
        (fetched_at,) = _TIME.unpack_from(sealed, end_id)
        return Opened(value, fetched_at, key_id)
