"""Text rules of telemetry values, the one Python home of each (the table
``priv/catalog/value_rules.json`` is the contract; Rust's ``validate`` and
Elixir's ``SafeMetadata`` follow the same table).

* :func:`metadata_text`: a metadata value as the text Elixir receives:
  ``True``/``False`` -> ``"true"``/``"false"``, floats as Python's ``repr``
  (shortest round-trip digits; ``1e+20``, ``1.5e-07``, ``100.0``), everything
  else ``str(value)``.
* :func:`head_utf8` / :func:`tail_utf8`: a string cut to a number of UTF-8
  bytes without splitting a character (the receiver cuts metadata values at
  ``max_metadata_value_bytes`` the same way); lone surrogates become ``?``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["head_utf8", "metadata_text", "tail_utf8"]


def metadata_text(value: Any) -> str:
    """The text of a non-``None`` metadata value (may raise what ``str`` raises)."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def head_utf8(text: str, limit: int) -> str:
    """The first ``limit`` bytes of ``text`` in UTF-8, never half a character."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def tail_utf8(text: str, limit: int) -> str:
    """The last ``limit`` bytes of ``text`` in UTF-8, never half a character."""
    data = text.encode("utf-8", "replace")
    return data[-limit:].decode("utf-8", "ignore") if len(data) > limit else data.decode("utf-8")
