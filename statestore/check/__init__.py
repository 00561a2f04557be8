"""``statestore check``: probe a backend and say whether statestore's compare-and-swap is safe on it.

Every probe works on scratch objects under the app's own prefix,
``persistent-artifacts/apps/<app>/.statestore-check/<random>/``, and removes
them afterwards (also when a probe fails); no state a user stored is read or
written. The result is a ``CheckReport``: one ``Probe`` per question asked, a
``Verdict``, and the settings to use on this backend.

- S3: raw requests through the backend's own client, so the report says what
  the *server* does (not what the backend's workarounds make of it):
  reachable, bucket, SSE when configured, put/get/list/delete permissions,
  create-if-absent, ``If-Match`` with the current ETag quoted and unquoted, a
  stale ``If-Match``, ``If-Match`` on a missing key, 1.7 KB of user metadata,
  and a conditional delete.
- Local: the root (exists or can be created, is a directory, writable), no
  symbolic link on the way to the app's states, the backend's conditional
  writes, ``flock`` exclusion, file and directory modes.
- Memory: trivially safe (one process, one dict); the protocol probes run anyway.

Modules: ``report`` (``CheckReport``, ``Probe``, ``Verdict``, ``Outcome`` and the collector the
checks fill in), ``protocol`` (the probes through the ``ObjectBackend`` API: memory and unknown
backends), ``local`` and ``s3`` (each backend's own probes). Rendering is the CLI's (``cli.render``).
"""

from __future__ import annotations

from ..backends.base import ObjectBackend
from ..backends.local import LocalBackend
from ..backends.memory import MemoryBackend
from ..backends.s3.backend import S3Backend
from ..backends.wrappers import WrapperBackend
from .local import check_local
from .protocol import check_memory, check_other
from .report import (
    CONDITIONAL_DELETE_SETTING,
    IF_MATCH_SETTING,
    LOST_UPDATES,
    SCRATCH_DIR,
    CheckReport,
    Outcome,
    Probe,
    Verdict,
    configuration_report,
)
from .s3 import check_s3

__all__ = [
    "CONDITIONAL_DELETE_SETTING",
    "IF_MATCH_SETTING",
    "LOST_UPDATES",
    "SCRATCH_DIR",
    "CheckReport",
    "Outcome",
    "Probe",
    "Verdict",
    "check_backend",
    "configuration_report",
]


async def check_backend(backend: ObjectBackend, app_name: str) -> CheckReport:
    """Probe ``backend`` for the app ``app_name`` and report whether statestore is safe on it.

    Wrappers (counting, latency, faults) are looked through: the check is of
    the backend underneath.
    """
    inner = backend
    while isinstance(inner, WrapperBackend):
        inner = inner.inner
    if isinstance(inner, S3Backend):
        return await check_s3(inner, app_name)
    if isinstance(inner, LocalBackend):
        return await check_local(inner, app_name)
    if isinstance(inner, MemoryBackend):
        return await check_memory(inner, app_name)
    return await check_other(inner, app_name)
