"""The analyst's console (docs/console.md): the node's web pages at ``/``."""

from .app import Console, mount

__all__ = ["Console", "mount"]
