"""Python side of Snakepit: the worker bridge.

Subpackages and modules:

- :mod:`snakepit_bridge.telemetry` -- ``emit``, ``span`` and the pluggable
  backends that carry events to Elixir.
- :mod:`snakepit_bridge.catalog` -- the shared event catalog
  (``priv/catalog/telemetry_catalog.json``), read at import.

This package module deliberately imports nothing: ``python -m
snakepit_bridge.catalog`` must run without the package having imported the
module first (Python would warn on stderr), and importing the package must
never select a telemetry backend as a side effect.
"""
