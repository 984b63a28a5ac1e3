"""Finding filters by name: the ``imapproxy.filters`` entry-point group, plus filters
registered in-process (tests, embedding applications).

A name that is unknown, cannot be imported or whose factory refuses its settings raises
``UnknownFilter`` / ``FilterSetupError`` with one readable line; the config loader turns that
into a config error at start, never at the first message.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .api import FilterFactory, MessageFilter

GROUP = "imapproxy.filters"

_registered: dict[str, FilterFactory] = {}


class FilterSetupError(Exception):
    """A filter named in the config cannot be loaded or configured; str() says why."""


class UnknownFilter(FilterSetupError):
    """No filter of that name is installed."""


def register(name: str, factory: FilterFactory) -> None:
    """Make ``name`` available without an entry point; a later call replaces it."""
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


def available() -> list[str]:
    """Every filter name that can be configured, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)} | set(_registered))


def factory_for(name: str) -> FilterFactory:
    if name in _registered:
        return _registered[name]
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        known = ", ".join(available()) or "none"
        raise UnknownFilter(f"unknown filter {name!r} (installed: {known})")
    try:
        factory = found[0].load()
    except Exception as exc:  # an import error in a plug-in must name the plug-in
        raise FilterSetupError(f"filter {name!r} ({found[0].value}) cannot be loaded: "
                               f"{type(exc).__name__}: {exc}") from exc
    if not callable(factory):
        raise FilterSetupError(f"filter {name!r} ({found[0].value}) is not callable")
    return factory  # type: ignore[no-any-return]


def create(name: str, settings: Mapping[str, Any]) -> MessageFilter:
    """The configured filter ``name``; FilterSetupError when it cannot be had."""
    factory = factory_for(name)
    try:
        made = factory(settings)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise FilterSetupError(f"filter {name!r}: {exc}") from exc
    if not isinstance(made, MessageFilter):
        raise FilterSetupError(f"filter {name!r}: the factory returned {type(made).__name__}, "
                               "not a MessageFilter")
    return made
