"""One error base class for the whole of intelpact.

Every error says what was expected, what was found, and how to fix it. The
message stays one line; ``hint`` carries the fix so interfaces can print it on
its own line (CLI) or in the ``description`` of an error body (HTTP).
"""

from __future__ import annotations


class IntelpactError(Exception):
    """Base class: a clear one-line message plus an optional fix."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message and, when known, the fix, for a person to read."""
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message
