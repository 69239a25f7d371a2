"""The fault suite: one knob for its size, and a results file for RELIABILITY.md.

CHUNKY_FAULTS=full (``make faults``) runs the full counts; anything else (the
default, and ``make test``) a few injections of each fault. With
CHUNKY_FAULT_RESULTS=path, every row is merged into that JSON file, which
``python -m tests.faults.report`` turns into RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

FULL = os.environ.get("CHUNKY_FAULTS", "short") == "full"
# Known defects whose fixes are not merged yet are xfail(SHORT, strict=True): in `make test` they
# are expected to fail (and fail the run once they pass, so the mark gets removed); `make faults`
# reports them as the failures they are.
SHORT = not FULL
RESULTS = os.environ.get("CHUNKY_FAULT_RESULTS")


def count(short: int, full: int) -> int:
    """How many times to inject a fault at the suite's current size."""
    return full if FULL else short


def check(ok: bool, detail: str, finding: str = "") -> dict:
    return {"ok": bool(ok), "detail": detail, "finding": finding}


class Rows:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def record(
        self,
        row_id: str,
        *,
        fault: str,
        injected: int,
        tally: object | None = None,
        checks: dict[str, dict] | None = None,
        extra: dict | None = None,
        findings: str = "",
        test: str = "",
    ) -> dict:
        """One row of RELIABILITY.md. Record before asserting, so failing rows are kept too.

        ``checks``: other guarantees observed under the fault, each
        ``{"ok": bool, "detail": str, "finding": "issue 8 part N (owner)"}``;
        they are listed on their own and do not decide the row.
        ``findings``: which finding of the issue a failing row corresponds to.
        """
        row = {
            "fault": fault,
            "injected": injected,
            "scale": "full" if FULL else "short",
            **(tally.as_row() if tally is not None else {}),  # type: ignore[attr-defined]
            "checks": checks or {},
            "extra": extra or {},
            "findings": findings,
            "command": f"CHUNKY_FAULTS=full .venv/bin/python -m pytest -p no:cacheprovider {test}",
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        row["passed"] = bool(tally is None or tally.ok)  # type: ignore[attr-defined]
        self.rows[row_id] = row
        return row

    def write(self, path: Path) -> None:
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing.update(self.rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(existing.items())), indent=2) + "\n")


@pytest.fixture(scope="session")
def fault_rows():
    rows = Rows()
    yield rows
    if RESULTS and rows.rows:
        rows.write(Path(RESULTS))
