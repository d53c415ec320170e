"""OpenTelemetry tracing for a worker, optional: the reference package's
``setup_tracing`` / ``get_tracer`` / ``otel_span`` on our correlation id.

The package works without OpenTelemetry; with ``opentelemetry-sdk`` installed,
:func:`setup_tracing` installs a ``TracerProvider`` whose resource is
``service.name`` (``SNAKEPIT_SERVICE_NAME``, default
``snakepit.python.bridge``), ``service.namespace = snakepit`` and
``service.instance.id`` (``SNAKEPIT_INSTANCE_ID``, else random). Spans go to
OTLP/HTTP when ``SNAKEPIT_OTEL_ENDPOINT`` is set (needs
``opentelemetry-exporter-otlp-proto-http``), else to the console unless
``SNAKEPIT_OTEL_CONSOLE`` is false. In every case log records get a
``correlation_id`` attribute (the current id, else ``"-"``), and events
emitted inside a span carry its ``trace_id`` and ``span_id`` (hex) as
metadata.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .context import (
    CORRELATION_HEADER,
    get_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

__all__ = [
    "TRACEPARENT",
    "current_ids",
    "get_tracer",
    "otel_span",
    "remote_parent",
    "setup_tracing",
]

#: The W3C trace-context key a caller's trace travels under (gRPC metadata
#: or a tool call's request metadata).
TRACEPARENT = "traceparent"

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {"done": False, "tracer": None, "factory": False}

#: True once tracing is set up: ``emit`` then adds the active span's ids.
active = False

_FALSE = {"0", "false", "no", "off"}


def setup_tracing(*, exporter: Any = None) -> bool:
    """Sets tracing up once (later calls return the first answer): True when
    the SDK is importable and a tracer is installed. ``exporter`` (beyond the
    reference: a span exporter, e.g. the SDK's in-memory one in tests)
    replaces the exporter the environment selects."""
    with _lock:
        _install_log_factory()
        if not _state["done"]:
            _state["done"] = True
            _state["tracer"] = _tracer_or_none(exporter)
        _set_active(_state["tracer"] is not None)
        return _state["tracer"] is not None


def _set_active(on: bool) -> None:
    global active
    active = on


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the active span, if there is one."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def get_tracer() -> Any:
    """The tracer once :func:`setup_tracing` installed one, else ``None``."""
    return _state["tracer"]


@contextmanager
def otel_span(
    name: str,
    *,
    context_metadata: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Makes a correlation id current for the block: the one in
    ``context_metadata`` (gRPC metadata pairs; the header name matched without
    case), else the current one, else a new one. With tracing set up, the
    block runs in an OpenTelemetry span named ``name`` with ``attributes``
    plus ``snakepit.correlation_id``, which is yielded; otherwise ``None``."""
    correlation_id = _incoming(context_metadata) or get_correlation_id() or new_correlation_id()
    token = set_correlation_id(correlation_id)
    try:
        tracer = get_tracer()
        if tracer is None:
            yield None
            return
        attrs = {**(attributes or {}), "snakepit.correlation_id": correlation_id}
        with tracer.start_as_current_span(name, attributes=attrs) as span:
            yield span
    finally:
        reset_correlation_id(token)


@contextmanager
def remote_parent(traceparent: str | None) -> Iterator[None]:
    """Inside the block, spans started (ours and ``otel_span``'s) are children
    of the W3C ``traceparent`` a caller sent (a trace started in Elixir goes on
    here). Without tracing, or without a valid traceparent, nothing changes."""
    if get_tracer() is None or not traceparent:
        yield
        return
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({TRACEPARENT: str(traceparent)})
    token = context.attach(parent)
    try:
        yield
    finally:
        context.detach(token)


def _incoming(metadata: Iterable[tuple[str, str]] | Mapping[str, str] | None) -> str | None:
    if not metadata:
        return None
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    for key, value in pairs:
        if str(key).lower() == CORRELATION_HEADER and str(value).strip():
            return str(value).strip()
    return None


def _tracer_or_none(exporter: Any) -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        return None
    resource = Resource.create(
        {
            "service.name": os.environ.get("SNAKEPIT_SERVICE_NAME", "snakepit.python.bridge"),
            "service.namespace": "snakepit",
            "service.instance.id": os.environ.get("SNAKEPIT_INSTANCE_ID") or uuid.uuid4().hex,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif endpoint := os.environ.get("SNAKEPIT_OTEL_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            _log.warning(
                "SNAKEPIT_OTEL_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http "
                "is not installed: spans are not exported"
            )
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif os.environ.get("SNAKEPIT_OTEL_CONSOLE", "true").strip().lower() not in _FALSE:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    # The global provider can be set once per process (another library may
    # have): our tracer comes from our provider either way.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)
    return provider.get_tracer("snakepit.python.bridge")


def _install_log_factory() -> None:
    if _state["factory"]:
        return
    _state["factory"] = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "correlation_id"):
            record.correlation_id = get_correlation_id("-")
        return record

    logging.setLogRecordFactory(factory)
