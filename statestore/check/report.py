"""What a check reports: one ``Probe`` per question, a ``Verdict``, and the settings to use (``CheckReport``).

Also the collector every check fills in (``CheckRun``), the early stop (``StopCheck``), and the report made when
no backend can be built (``configuration_report``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..keys.paths import KEY_ROOT

#: The directory, below ``persistent-artifacts/apps/<app>/``, that holds the scratch objects.
SCRATCH_DIR = ".statestore-check"
IF_MATCH_SETTING = "STATESTORE_S3_IF_MATCH"
CONDITIONAL_DELETE_SETTING = "STATESTORE_S3_CONDITIONAL_DELETE"
LOST_UPDATES = "concurrent updates would be lost"


class Outcome(StrEnum):
    """What one probe found."""

    OK = "ok"  # the backend did what statestore needs
    FAIL = "fail"  # it did not (a quirk the settings handle, or a problem the verdict names)
    SKIPPED = "skipped"  # not asked: not configured, or an earlier probe stopped the check
    UNSAFE = "unsafe"  # it accepted what it must refuse: with it, updates can be lost


class Verdict(StrEnum):
    """Whether statestore is safe on the backend; the CLI's exit code follows it (0, 4, 1, 2)."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    UNREACHABLE = "unreachable"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True)
class Probe:
    """One question asked of the backend, and the answer."""

    name: str
    outcome: Outcome
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome.value, "detail": self.detail}


@dataclass(frozen=True)
class CheckReport:
    """The result of ``Store.check()``: the probes, the verdict, and the settings to use on this backend.

    ``settings`` maps ``STATESTORE_*`` variables to the values the probes found
    right for this server (empty when nothing needs setting).
    """

    backend: str
    kind: str  # "s3", "local", "memory", or "other"
    verdict: Verdict
    message: str
    probes: list[Probe] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return self.verdict is Verdict.SAFE

    def probe(self, name: str) -> Probe | None:
        """The probe called ``name``, if the check has one."""
        return next((p for p in self.probes if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "backend": self.backend,
            "kind": self.kind,
            "verdict": self.verdict.value,
            "message": self.message,
            "settings": dict(self.settings),
            "probes": [p.to_dict() for p in self.probes],
        }


class StopCheck(Exception):
    """A probe found a problem that makes the remaining probes pointless."""

    def __init__(self, probe: str, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.probe, self.verdict, self.detail = probe, verdict, detail


_PRECEDENCE = (Verdict.UNSAFE, Verdict.MISCONFIGURED, Verdict.UNREACHABLE)


class CheckRun:
    """Collects probe results in a fixed order, and the problems that decide the verdict."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.results: dict[str, Probe] = {}
        self.problems: list[tuple[Verdict, str]] = []
        self.stopped: str | None = None

    def ok(self, name: str, detail: str) -> None:
        self.results[name] = Probe(name, Outcome.OK, detail)

    def skipped(self, name: str, detail: str) -> None:
        self.results[name] = Probe(name, Outcome.SKIPPED, detail)

    def fail(self, name: str, detail: str, verdict: Verdict | None = None, problem: str | None = None) -> None:
        """A failed probe; with ``verdict`` it decides the verdict (``problem``, else ``detail``, says why)."""
        self.results[name] = Probe(name, Outcome.FAIL, detail)
        if verdict is not None:
            self.problems.append((verdict, problem or detail))

    def unsafe(self, name: str, detail: str, problem: str) -> None:
        self.results[name] = Probe(name, Outcome.UNSAFE, detail)
        self.problems.append((Verdict.UNSAFE, problem))

    def stop(self, stop: StopCheck) -> None:
        self.fail(stop.probe, stop.detail, stop.verdict)
        self.stopped = stop.probe

    def report(self, backend: str, kind: str, settings: dict[str, str], safe_message: str) -> CheckReport:
        reason = f"not run: the {self.stopped!r} probe stopped the check" if self.stopped else "not run"
        probes = [self.results.get(name) or Probe(name, Outcome.SKIPPED, reason) for name in self.names]
        probes += [p for name, p in self.results.items() if name not in self.names]
        found = {verdict for verdict, _ in self.problems}
        verdict = next((v for v in _PRECEDENCE if v in found), Verdict.SAFE)
        if verdict is Verdict.SAFE:
            message = safe_message
        else:
            message = "; ".join(dict.fromkeys(text for v, text in self.problems if v is verdict))
            if verdict is Verdict.UNSAFE:
                message = f"{message}. Do not use statestore on this backend as it is"
        return CheckReport(backend, kind, verdict, message, probes, settings)


def scratch_prefix(app: str) -> str:
    """A fresh directory key for one check's scratch objects (ends with ``/``)."""
    return f"{KEY_ROOT}/{app}/{SCRATCH_DIR}/{secrets.token_hex(8)}/"


def configuration_report(backend: str, problem: str) -> CheckReport:
    """The report when no backend can even be built (a missing bucket setting, a bad ``STATESTORE_*`` value)."""
    run = CheckRun(["configuration"])
    run.fail("configuration", problem, Verdict.MISCONFIGURED)
    return run.report(backend, "unknown", {}, "")
