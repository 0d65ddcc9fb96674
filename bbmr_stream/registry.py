"""Things looked up by name (rung families, SR architectures, upscalers, scorers): one kind of registry.

A :class:`Registry` is a dict from name to item (``item.name``) that refuses a second registration of a name
and turns an unknown name into the caller's error class with the names it knows, so that every lookup of a
kind says the same thing.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """``name -> item`` in registration order. ``kind`` names the items in messages (``"upscaler"``);
    ``error`` is raised by :meth:`lookup` for an unknown name; ``listing`` introduces the known names."""

    def __init__(self, kind: str, error: type[Exception] = KeyError, listing: str = "choose from") -> None:
        super().__init__()
        self.kind, self.error, self.listing = kind, error, listing

    def register(self, item: T) -> T:
        """Add ``item`` under ``item.name`` (a name may be registered once); returns it."""
        name = item.name
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = item
        return item

    def lookup(self, name: str, context: str = "") -> T:
        """The item called ``name``; unknown -> ``error`` naming the known ones (``context`` follows the name)."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.kind} {name!r}{context} ({self.listing} {', '.join(self)})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self)
