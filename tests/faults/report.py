"""Writes RELIABILITY.md from the fault suite's results JSON.

    python -m tests.faults.report [tests/faults/results.json] [RELIABILITY.md]

``make faults`` runs it after the full suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = [
    "web-kill",
    "celery-kill",
    "redis-empty",
    "redis-data",
    "redis-freeze",
    "full-disk",
    "client-delay",
    "client-drop",
    "client-reset",
    "redis-delay",
    "redis-drop",
    "redis-reset",
    "slow-clients",
    "fuzz",
]

HEAD = """# Reliability under faults

What the fault suite (`tests/faults/`) did to the running service (gunicorn with
`deploy/gunicorn.conf.py`, a Celery worker, a private `redis-server`) and what became of
the uploads. Every upload is judged byte for byte: the md5 of the final file equals the
client's, the status is `complete`, and `upload_completed` fired exactly once. The clients
retry as a real client does (on a broken connection, 409 or 5xx they read the offset from
the status URL and resend; after a 404 they start over).

- **lost**: the upload failed, or the server refused it for good;
- **corrupted**: complete with other bytes than the client's, or another offset or other
  bytes recorded than were accepted;
- **stuck**: not finished when the client's deadline passed (minutes, far beyond any retry);
- **signal**: `upload_completed` not sent exactly once (or sent for an abandoned upload).

The target is 0 in every one of these columns. Run everything with `make faults` (the full
counts; writes `tests/faults/results.json` and this file); `make test` runs a short version
of the same tests (a few injections each). A row's command reproduces it alone.

"""


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(results: dict[str, dict]) -> str:
    ids = [i for i in ORDER if i in results] + sorted(set(results) - set(ORDER))
    out = [HEAD]
    scales = {results[i].get("scale") for i in ids}
    dates = sorted(results[i].get("recorded", "") for i in ids)
    if dates:
        out.append(
            f"Results of the {' and '.join(sorted(s for s in scales if s))} run, "
            f"{dates[0][:16].replace('T', ' ')} to {dates[-1][:16].replace('T', ' ')} UTC.\n\n"
        )
    out.append(
        "| fault | injected | uploads | lost | corrupted | stuck | signal | result | notes |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|---|\n"
    )
    for i in ids:
        r = results[i]
        notes = [f"{k}: {v}" for k, v in r.get("extra", {}).items() if k != "statuses"]
        if r.get("restarts"):
            notes.append(f"{r['restarts']} started over after a lost record")
        if not r.get("passed") and r.get("findings"):
            notes.append(f"fails: {r['findings']}")
        out.append(
            f"| {_cell(r['fault'])} | {r['injected']} | {r.get('uploads', 0)} | "
            f"{r.get('lost', 0)} | {r.get('corrupted', 0)} | {r.get('stuck', 0)} | "
            f"{r.get('signal_errors', 0)} | {'pass' if r.get('passed') else '**FAIL**'} | "
            f"{_cell('; '.join(notes))} |\n"
        )
    out.append("\n## Other guarantees checked under the same faults\n\n")
    out.append(
        "| fault | guarantee | result | observed | owner of the fix |\n|---|---|---|---|---|\n"
    )
    for i in ids:
        for name, c in results[i].get("checks", {}).items():
            out.append(
                f"| {i} | {_cell(name)} | {'pass' if c['ok'] else '**FAIL**'} | "
                f"{_cell(c['detail'][:300])} | {_cell(c.get('finding', '')) if not c['ok'] else ''} |\n"
            )
    out.append("\n## Problems seen (first few per fault)\n\n")
    for i in ids:
        problems = results[i].get("problems", [])
        if problems:
            out.append(f"- **{i}**:\n")
            out += [f"  - {_cell(p[:400])}\n" for p in problems[:5]]
    out.append("\n## Reproduce\n\n| fault | command |\n|---|---|\n")
    for i in ids:
        out.append(f"| {i} | `{results[i]['command']}` |\n")
    return "".join(out)


def main(argv: list[str]) -> None:
    source = Path(argv[0] if argv else "tests/faults/results.json")
    target = Path(argv[1] if len(argv) > 1 else "RELIABILITY.md")
    target.write_text(render(json.loads(source.read_text())))
    print(f"wrote {target} from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
