"""Errors raised by the core model."""

from __future__ import annotations

from ..errors import IntelpactError


class AgreementError(IntelpactError):
    """An agreement file is malformed: names the file, the field and the fix."""

    def __init__(self, source: str, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: {field}: {problem}", hint=fix)
        self.source = source
        self.field = field
        self.problem = problem


class MarkingError(IntelpactError):
    """A marking-definition is unknown, malformed or inconsistent with the agreement."""


class LabelError(IntelpactError):
    """An object's markings cannot be turned into a label (no marking, bad selector...)."""
