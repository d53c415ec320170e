"""Which events a worker's telemetry stream keeps: the settings Elixir's
controls made (toggle, sampling rate and patterns, allow and deny filters,
closed) and the verdict per event name derived from them, cached.

Patterns are globs with the meaning of ``fnmatch.fnmatchcase`` (the globs of
``priv/catalog/value_rules.json``): ``*`` any run of characters, dots
included, ``?`` one character, ``[abc]``/``[!abc]`` classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["CLOSED", "DISABLED", "FILTERED", "Policy", "as_patterns", "matches"]

#: Verdicts cached per event name besides True (the event passes) and a
#: sampling probability: the counter that records the event as not kept.
DISABLED = "disabled"
FILTERED = "filtered_out"
CLOSED = "dropped"

#: At most this many event names get a cached verdict per policy.
_VERDICT_CACHE_LIMIT = 4096


class Policy(dict):
    """The settings in force plus the verdicts derived from them, keyed by
    event name. Immutable settings: a control installs a new policy (an atomic
    swap), so a verdict computed from old settings can never land in the new
    cache."""

    __slots__ = ("allow", "closed", "deny", "enabled", "patterns", "rate")

    def __init__(
        self,
        *,
        enabled: bool = True,
        rate: float = 1.0,
        patterns: tuple[str, ...] = (),
        allow: tuple[str, ...] = (),
        deny: tuple[str, ...] = (),
        closed: bool = False,
    ) -> None:
        super().__init__()
        self.enabled = enabled
        self.rate = rate
        self.patterns = patterns
        self.allow = allow
        self.deny = deny
        self.closed = closed

    def replace(self, **changes: Any) -> Policy:
        settings = {
            "enabled": self.enabled,
            "rate": self.rate,
            "patterns": self.patterns,
            "allow": self.allow,
            "deny": self.deny,
            "closed": self.closed,
        }
        settings.update(changes)
        return Policy(**settings)

    def decide(self, name: str) -> bool | float | str:
        """True (keep), a float (keep with that probability) or the name of the
        counter that records the event as not kept."""
        verdict: bool | float | str
        if self.closed:
            verdict = CLOSED
        elif not self.enabled:
            verdict = DISABLED
        elif (self.deny and matches(name, self.deny)) or (
            self.allow and not matches(name, self.allow)
        ):
            verdict = FILTERED
        elif self.rate < 1.0 and (not self.patterns or matches(name, self.patterns)):
            verdict = self.rate
        else:
            verdict = True
        if len(self) < _VERDICT_CACHE_LIMIT:
            self[name] = verdict
        return verdict

    def settings(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "sampling_rate": self.rate,
            "sampling_patterns": list(self.patterns),
            "allow": list(self.allow),
            "deny": list(self.deny),
            "closed": self.closed,
        }


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def as_patterns(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values if str(v))
