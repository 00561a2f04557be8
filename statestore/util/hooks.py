"""Where the lower layers tell telemetry what happened: callables that stay None unless telemetry installs them.

The compare-and-swap loop calls ``on_conflict`` before it retries after a failed
precondition; the S3 backend calls ``on_retry`` before it retries a transient
failure. ``statestore.telemetry`` sets them only when OpenTelemetry is installed,
so without it each call site costs one test of None on a path that is already slow.
"""

from __future__ import annotations

from collections.abc import Callable

on_conflict: Callable[[], None] | None = None
on_retry: Callable[[], None] | None = None
