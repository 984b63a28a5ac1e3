"""Which filters and fixups a session gets: its listener's, unless a ``[[filter_rule]]``
matching its user, client ID name or listener says otherwise (the first match wins).

The filters are built once per process (``FilterCatalog``), and chains are shared by every
session that selects the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..config import Config, FilterRule, ListenerConfig
from .api import MessageFilter
from .chain import EMPTY, FilterChain, Observer
from .registry import create


@dataclass(frozen=True)
class Selection:
    chain: FilterChain
    fixups: frozenset[str]


class FilterCatalog:
    def __init__(self, config: Config, observe: Observer | None = None) -> None:
        self.observe = observe
        self.rules = config.filter_rules
        self.settings = config.filter_settings
        self._filters: dict[str, MessageFilter] = {}
        self._chains: dict[tuple[str, ...], FilterChain] = {(): EMPTY}
        for listener in config.listeners:
            self.chain(listener.filters)
        for rule in self.rules:
            self.chain(rule.filters or ())

    def chain(self, names: tuple[str, ...]) -> FilterChain:
        found = self._chains.get(names)
        if found is None:
            for name in names:
                if name not in self._filters:
                    self._filters[name] = create(name, self.settings.get(name, {}))
            steps = [self._filters[n] for n in names]
            found = self._chains[names] = FilterChain(steps, self.observe)
        return found

    def select(self, listener: ListenerConfig, user: str,
               client_id: Mapping[str, str]) -> Selection:
        filters, fixups = listener.filters, listener.fixups
        rule = matching_rule(self.rules, listener, user, client_id)
        if rule is not None:
            filters = rule.filters if rule.filters is not None else filters
            fixups = rule.fixups if rule.fixups is not None else fixups
        return Selection(self.chain(filters), frozenset(fixups))


def matching_rule(rules: tuple[FilterRule, ...], listener: ListenerConfig, user: str,
                  client_id: Mapping[str, str]) -> FilterRule | None:
    client_name = client_id.get("name", "")
    for rule in rules:
        if _matches(rule.user, user) and _matches(rule.client_name, client_name) \
                and (rule.listener is None or rule.listener == listener.bind):
            return rule
    return None


def _matches(pattern: str | None, value: str) -> bool:
    return pattern is None or fnmatchcase(value.lower(), pattern.lower())
