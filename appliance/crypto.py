"""The few cryptographic primitives every other module uses.

All symmetric encryption is AES-256-GCM with a random 96-bit nonce. `seal`
binds "associated data" (what the bytes are, e.g. which key or which field of
which record) so a ciphertext moved to another place fails to open instead of
decrypting as the wrong thing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import IntegrityError

KEY_BYTES = 32
NONCE_BYTES = 12
SEAL_VERSION = b"\x01"


def random_key() -> bytes:
    """A fresh 256-bit key from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `plaintext`; the result is version|nonce|ciphertext|tag."""
    nonce = os.urandom(NONCE_BYTES)
    return SEAL_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Inverse of `seal`; raises IntegrityError on a wrong key, changed bytes or wrong `aad`."""
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != SEAL_VERSION:
        raise IntegrityError("sealed value is malformed or of an unknown version")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise IntegrityError("authentication failed (wrong key or altered data)") from exc


def derive_key(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 sub-key, so one stored key can serve several purposes safely."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info)
    return hkdf.derive(key)


def keyed_hash(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256: the blind index for exact look-ups of encrypted values."""
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost for the recovery passphrase (RFC 9106 second recommended option)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 2

    def as_dict(self) -> dict[str, int]:
        return {"t": self.time_cost, "m": self.memory_kib, "p": self.parallelism}

    @classmethod
    def from_dict(cls, raw: dict[str, int]) -> Argon2Params:
        return cls(time_cost=raw["t"], memory_kib=raw["m"], parallelism=raw["p"])


def passphrase_key(passphrase: str, salt: bytes, params: Argon2Params) -> bytes:
    """Stretch a recovery passphrase into a key-wrapping key with Argon2id."""
    return hash_secret_raw(
        secret=passphrase.encode("utf-8"),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )
