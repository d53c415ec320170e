"""Loaded with --tool-module: sets tracing up in the worker (no exporter
output), so events carry trace ids (the SDK comes with the dev requirements)."""

from __future__ import annotations

from snakepit_bridge import telemetry

assert telemetry.setup_tracing(), "opentelemetry-sdk is not installed"
