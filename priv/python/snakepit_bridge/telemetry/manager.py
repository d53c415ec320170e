"""Which backend is active: selection at import, switching at run time.

At import the environment variable ``PYTHON_SNAKEPIT_TELEMETRY`` decides
(case-insensitive, surrounding whitespace ignored):

* ``stderr`` -- a :class:`~.backends.stderr.StderrBackend` writing to ``sys.stderr``;
* ``grpc`` -- the gRPC backend, which only a worker can provide (it needs the
  worker's ``TelemetryStream``): no backend at import, and ``grpc_server.py``
  installs a :class:`~.backends.grpc.GrpcBackend` at start-up (as it does when the
  variable is unset);
* unset, empty or ``off`` -- no backend: ``emit`` does nothing and
  :func:`is_enabled` is ``False`` until :func:`set_backend` installs one (the gRPC
  worker does that at start-up unless the value is ``off``);
* anything else -- no backend, and one warning through :mod:`logging`.

The active backend is a single module-level reference: reading it is one
attribute lookup, and replacing it is atomic, so switching is safe while other
threads emit (an event in flight goes to the old or the new backend, never both).
"""

from __future__ import annotations

import logging
import os

from .backends.base import TelemetryBackend
from .backends.stderr import StderrBackend

__all__ = [
    "ENV_VAR",
    "backend_from_env",
    "choice_from_env",
    "get_backend",
    "is_enabled",
    "set_backend",
]

#: Environment variable that selects the backend at import.
ENV_VAR = "PYTHON_SNAKEPIT_TELEMETRY"

_log = logging.getLogger(__name__)

#: The active backend; read directly by ``emit`` (hot path). Change it only
#: through :func:`set_backend`.
backend: TelemetryBackend | None = None


def set_backend(new: TelemetryBackend | None) -> TelemetryBackend | None:
    """Makes ``new`` the active backend (``None`` turns telemetry off).

    Returns the previously active backend, which is *not* closed: the caller
    decides (e.g. a test restores it afterwards). Raises :class:`TypeError` for
    anything that is neither a :class:`TelemetryBackend` nor ``None``.
    """
    global backend
    if new is not None and not isinstance(new, TelemetryBackend):
        raise TypeError(f"expected a TelemetryBackend or None, got {type(new).__name__}")
    previous, backend = backend, new
    return previous


def get_backend() -> TelemetryBackend | None:
    """The active backend, or ``None`` when telemetry is off."""
    return backend


def is_enabled() -> bool:
    """True when a backend is installed, i.e. ``emit`` sends events somewhere."""
    return backend is not None


def backend_from_env(value: str | None) -> TelemetryBackend | None:
    """The backend the value of ``PYTHON_SNAKEPIT_TELEMETRY`` asks for (see the
    module docs); logs a warning and returns ``None`` for an unknown value."""
    choice = (value or "").strip().lower()
    if choice == "stderr":
        return StderrBackend()
    if choice not in ("", "off", "grpc"):
        _log.warning("%s=%r is not one of: stderr, grpc, off; telemetry stays off", ENV_VAR, value)
    return None


def choice_from_env(value: str | None) -> str:
    """``"stderr"``, ``"grpc"`` or ``"off"``: what a worker should install for
    this value of ``PYTHON_SNAKEPIT_TELEMETRY`` (unset or empty means ``"grpc"``,
    an unknown value ``"off"``)."""
    choice = (value or "").strip().lower()
    if choice in ("", "grpc"):
        return "grpc"
    return choice if choice in ("stderr", "off") else "off"


set_backend(backend_from_env(os.environ.get(ENV_VAR)))
