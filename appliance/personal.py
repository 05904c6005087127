"""Personal fields: sealed with the subject's data key before they reach SQLCipher.

A model declares a personal field as a sealed column plus a `PersonalField`
descriptor (and optionally a blind-index column for exact look-ups):

    name_sealed: Mapped[bytes | None] = mapped_column("name", LargeBinary)
    name = PersonalField("name_sealed")

Reading `candidate.name` opens the value with the subject's key through the
session's `Vault`; once that key is destroyed it reads as `UNAVAILABLE`,
never as garbage and never as a crash. Assigning seals at once when the row
is in a session, or at flush for a row just created.

This layer knows nothing of who is asking: the permission gate in
`compliance` decides that, and is the only caller portal, API and workers use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any, ClassVar, Final

from sqlalchemy import event, update
from sqlalchemy.orm import Session, object_session

from appliance import crypto
from appliance.errors import SubjectKeyDestroyed
from appliance.keyring import SubjectKeyring


class Unavailable:
    """What a personal field reads as after its subject's key was destroyed."""

    _instance: ClassVar[Unavailable | None] = None

    def __new__(cls) -> Unavailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return "[unavailable]"

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = Unavailable()


def normalise_phone(value: str) -> str:
    """Mainland mobile numbers as their 11 digits (+86, spaces and dashes dropped)."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def normalise_email(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().lower()


def normalise_text(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


class Vault:
    """Seals and opens personal fields for one session; caches keys only for its lifetime."""

    def __init__(self, keyring: SubjectKeyring, blind_index_key: bytes) -> None:
        self.keyring = keyring
        self._bidx_key = blind_index_key
        self._keys: dict[str, bytes | None] = {}

    def _key(self, subject_id: str) -> bytes | None:
        if subject_id not in self._keys:
            try:
                self._keys[subject_id] = self.keyring.data_key(subject_id)
            except SubjectKeyDestroyed:
                self._keys[subject_id] = None
        return self._keys[subject_id]

    def forget(self, subject_id: str) -> None:
        self._keys.pop(subject_id, None)

    @staticmethod
    def _aad(subject_id: str, where: str) -> bytes:
        return f"enclave:field:{where}:{subject_id}".encode()

    def seal(self, subject_id: str, where: str, value: str) -> bytes:
        key = self._key(subject_id)
        if key is None:
            raise SubjectKeyDestroyed(subject_id)
        return crypto.seal(key, value.encode("utf-8"), self._aad(subject_id, where))

    def open(self, subject_id: str, where: str, sealed: bytes) -> str | Unavailable:
        key = self._key(subject_id)
        if key is None:
            return UNAVAILABLE
        return crypto.open_sealed(key, sealed, self._aad(subject_id, where)).decode("utf-8")

    def blind_index(self, kind: str, normalised: str) -> bytes:
        """Keyed hash for exact look-ups; `kind` keeps a phone from matching an e-mail."""
        return crypto.keyed_hash(self._bidx_key, f"{kind}\x00{normalised}".encode())


def session_vault(session: Session | None) -> Vault:
    vault = session.info.get("vault") if session is not None else None
    if not isinstance(vault, Vault):
        raise RuntimeError(
            "personal fields need a session from Store.session() (it holds the vault)"
        )
    return vault


class PersonalField:
    """Descriptor over a sealed column; the owning row must have `subject_id`."""

    registry: ClassVar[list[tuple[type, PersonalField]]] = []

    def __init__(
        self,
        sealed_attr: str,
        index_attr: str | None = None,
        normalise: Callable[[str], str] = normalise_text,
    ) -> None:
        self.sealed_attr = sealed_attr
        self.index_attr = index_attr
        self.normalise = normalise
        self.name = ""
        self.where = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.where = f"{getattr(owner, '__tablename__', owner.__name__)}.{name}"
        PersonalField.registry.append((owner, self))

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        pending = obj.__dict__.get("_pending_personal", {})
        if self.name in pending:
            return pending[self.name]
        sealed = getattr(obj, self.sealed_attr)
        if sealed is None:
            return None
        return session_vault(object_session(obj)).open(obj.subject_id, self.where, sealed)

    def __set__(self, obj: Any, value: str | None) -> None:
        session = object_session(obj)
        if session is None or obj.subject_id is None:
            obj.__dict__.setdefault("_pending_personal", {})[self.name] = value
            return
        self.seal_into(obj, session_vault(session), value)

    def seal_into(self, obj: Any, vault: Vault, value: str | None) -> None:
        sealed = None if value is None else vault.seal(obj.subject_id, self.where, value)
        setattr(obj, self.sealed_attr, sealed)
        if self.index_attr:
            index = None if value is None else vault.blind_index(self.name, self.normalise(value))
            setattr(obj, self.index_attr, index)

    def index_of(self, vault: Vault, value: str) -> bytes:
        """The blind index to query with, e.g. `Candidate.phone_index == ...`."""
        return vault.blind_index(self.name, self.normalise(value))


@event.listens_for(Session, "before_flush")
def _seal_pending(session: Session, _ctx: Any, _instances: Any) -> None:
    """Rows created with personal values get them sealed once they know their session."""
    for obj in list(session.new) + list(session.dirty):
        pending = obj.__dict__.pop("_pending_personal", None)
        if not pending:
            continue
        vault = session_vault(session)
        for field in type(obj).__dict__.values():
            if isinstance(field, PersonalField) and field.name in pending:
                field.seal_into(obj, vault, pending[field.name])


def clear_blind_indexes(session: Session, subject_id: str) -> None:
    """After a key is destroyed, its exact-match indexes must go too (they still match)."""
    for owner, field in PersonalField.registry:
        if field.index_attr is not None:
            stmt = (
                update(owner)
                .where(owner.subject_id == subject_id)  # type: ignore[attr-defined]
                .values({field.index_attr: None})
            )
            session.execute(stmt)
