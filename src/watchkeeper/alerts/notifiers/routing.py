"""Routing: which notifier gets which notifications, by severity and monitor family.

A route is ``SELECTOR=TARGET[+TARGET…]``; several are separated by commas (or given as
several ``--notify`` options). A SELECTOR is a severity (``critical``, ``warning``), a
family (``drift``, ``performance``, … see ``FAMILIES``), ``FAMILY:SEVERITY`` or ``*``;
a TARGET names a kind of notifier (``pagerduty``, ``opsgenie``, ``slack``, ``teams``,
``webhook``, ``log``, ``email``). A notification's severity is its incident's (the highest
of its alerts, kept for its acknowledge and resolve, so a page is resolved where it was
opened); a family matches when one of its alerts is of that family. A notifier named in
some route gets only the notifications one of its routes matches; a notifier named in none
gets every notification, as without routes.

>>> routes = parse_routes(["critical=pagerduty,warning=slack", "drift:critical=slack"],
...                       ["pagerduty", "slack"])
>>> {k: [str(m) for m in v] for k, v in routes.items()}
{'pagerduty': ['critical'], 'slack': ['warning', 'drift:critical']}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watchkeeper.errors import ConfigError
from watchkeeper.monitors.base import FAMILIES

if TYPE_CHECKING:
    from watchkeeper.alerts.notification import Notification
    from watchkeeper.alerts.notifiers.base import Notifier

SEVERITIES = ("critical", "warning")
TARGETS = ("pagerduty", "opsgenie", "slack", "teams", "webhook", "log", "email")


@dataclass(frozen=True)
class Match:
    """One selector: a family, a severity, both, or neither (``*``: everything)."""

    family: str | None = None
    severity: str | None = None

    def matches(self, n: Notification) -> bool:
        if self.severity is not None and n.severity.value != self.severity:
            return False
        return self.family is None or any(a.family == self.family for a in n.alerts)

    def __str__(self) -> str:
        if self.family and self.severity:
            return f"{self.family}:{self.severity}"
        return self.family or self.severity or "*"


def parse_match(text: str) -> Match:
    """``critical``, ``drift``, ``drift:critical`` or ``*`` as a :class:`Match`."""
    text = text.strip()
    if text == "*":
        return Match()
    family, sep, severity = text.partition(":")
    if not sep:
        family, severity = ("", text) if text in SEVERITIES else (text, "")
    if severity and severity not in SEVERITIES:
        raise ConfigError(f"--notify: {severity!r} is not a severity (one of "
                          f"{', '.join(SEVERITIES)}){_closest(severity, SEVERITIES)}")
    if family and family not in FAMILIES:
        raise ConfigError(f"--notify: {family!r} is neither a severity ({', '.join(SEVERITIES)})"
                          f" nor a family ({', '.join(FAMILIES)})"
                          f"{_closest(family, (*SEVERITIES, *FAMILIES))}")
    return Match(family or None, severity or None)


def parse_routes(specs: Iterable[str], available: Iterable[str]) -> dict[str, list[Match]]:
    """Each target's selectors, from ``--notify`` values; a target must be one of
    ``available`` (the notifiers configured), else a ConfigError says which are."""
    names = list(dict.fromkeys(available))
    routes: dict[str, list[Match]] = {}
    for spec in specs:
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            selector, sep, targets = item.partition("=")
            if not sep or not selector.strip() or not targets.strip():
                raise ConfigError(f"--notify: {item!r} is not SELECTOR=TARGET (e.g. "
                                  "critical=pagerduty,warning=slack)")
            match = parse_match(selector)
            for target in (t.strip() for t in targets.split("+")):
                if target not in names:
                    known = ", ".join(names) or "none"
                    hint = "" if target in TARGETS else _closest(target, TARGETS)
                    raise ConfigError(f"--notify: no {target!r} notifier is configured "
                                      f"(configured: {known}){hint}")
                if match not in routes.setdefault(target, []):
                    routes[target].append(match)
    return routes


class Routed:
    """A notifier that takes only the notifications one of its ``matches`` selects."""

    def __init__(self, notifier: Notifier, matches: Iterable[Match]) -> None:
        self.notifier = notifier
        self.matches = list(matches)
        self.acknowledges = bool(getattr(notifier, "acknowledges", False))

    def accepts(self, n: Notification) -> bool:
        return any(m.matches(n) for m in self.matches)

    def send(self, notification: Notification) -> None:
        self.notifier.send(notification)

    def secrets(self) -> list[str]:
        get = getattr(self.notifier, "secrets", None)
        return list(get()) if callable(get) else []

    def __repr__(self) -> str:
        return repr(self.notifier)


def route(notifiers: Mapping[str, Iterable[Any]], specs: Iterable[str]) -> list[Any]:
    """The notifiers (by target name) with the routes of ``specs`` applied: those named
    in a route wrapped in :class:`Routed`, the others as they are."""
    routes = parse_routes(specs, [k for k, v in notifiers.items() if list(v)])
    out: list[Any] = []
    for name, group in notifiers.items():
        for notifier in group:
            out.append(Routed(notifier, routes[name]) if name in routes else notifier)
    return out


def _closest(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""
