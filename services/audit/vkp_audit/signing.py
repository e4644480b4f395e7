"""Checkpoint signatures: Ed25519, with a key kept outside the database (a file the service is
given). Whoever can write the database cannot sign a rewritten chain head."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vkp_audit.domain.chain import checkpoint_message
from vkp_audit.domain.model import Checkpoint


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = _key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds no Ed25519 private key")
        return cls(key)

    @staticmethod
    def create_file(path: Path) -> None:
        """Makes a new key file, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600, exist_ok=False)
        path.write_bytes(pem)

    def sign(self, municipality: str, sequence: int, head_hash: str, when: datetime) -> Checkpoint:
        message = checkpoint_message(municipality, sequence, head_hash, when)
        return Checkpoint(
            municipality, sequence, head_hash, when, self.key_id, self._key.sign(message)
        )

    def valid(self, checkpoint: Checkpoint) -> bool:
        """Whether this key signed `checkpoint` as it is."""
        if checkpoint.key_id != self.key_id:
            return False
        message = checkpoint_message(
            checkpoint.municipality, checkpoint.sequence, checkpoint.head_hash, checkpoint.sign_time
        )
        try:
            self.public_key.verify(checkpoint.signature, message)
        except InvalidSignature:
            return False
        return True
