"""Failures a caller (or an operator at the CLI) can act on, one class each.

Every message names the thing that failed and what to do about it; none of
them carries personal data, so they are safe to log.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class: `exit_code` is what the `appliance` CLI exits with."""

    exit_code = 1


class SettingsError(ApplianceError):
    """A setting is missing or malformed; the message names it and its source."""

    exit_code = 2


class DataDirError(ApplianceError):
    """The data dir is missing, not initialised, or would be overwritten."""

    exit_code = 2


class KeyProblem(ApplianceError):
    """Base for problems with the box's keys; the CLI exits 2 on any of them."""

    exit_code = 2


class WrongKeyError(KeyProblem):
    """The key file or recovery passphrase does not unwrap the master key."""


class MissingKeyError(KeyProblem):
    """A key file or wrapped key the box needs is not where it should be."""


class DatabaseKeyError(KeyProblem):
    """The database does not open with the key we hold (wrong key or not a database)."""


class SubjectKeyDestroyed(ApplianceError):
    """The subject's data key was destroyed (crypto-shredded): their data is gone for good."""

    def __init__(self, subject_id: str) -> None:
        super().__init__(
            f"the data key of subject {subject_id} was destroyed; their data is unreadable"
        )
        self.subject_id = subject_id


class IntegrityError(ApplianceError):
    """Encrypted data failed authentication: it was changed, reordered or cut."""


class BlobIntegrityError(IntegrityError):
    """A blob chunk failed authentication; names the blob and the chunk."""

    def __init__(self, blob_id: str, chunk: int, reason: str) -> None:
        super().__init__(f"blob {blob_id}, chunk {chunk}: {reason}")
        self.blob_id = blob_id
        self.chunk = chunk


class BlobTruncated(BlobIntegrityError):
    """The blob ends before its final chunk (cut short, or still being written)."""


class BlobNotFound(ApplianceError):
    """No blob with that id exists in the store."""
