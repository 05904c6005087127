"""Why a resume could not be read: one exception class, messages a person can act on.

Messages name the file's kind and the limit it broke, never text from the file
(they end up in job records and logs).
"""

from __future__ import annotations


class ResumeRejected(ValueError):
    """The file is not a resume this box will read (empty, damaged, hostile or over a limit)."""
