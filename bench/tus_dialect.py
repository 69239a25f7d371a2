"""The ``tus`` workload (issue 9, section 6): our tus dialect against @tus/server and against our
own chunky dialect, with the same client, in the same run.

Three legs per size, interleaved round by round (their order rotates each round):

- ``chunky``: the bundled site's chunky dialect (``PUT /upload/``), the upload completed by
  ``POST`` with its md5 (the completion is timed apart, not in the throughput);
- ``tus``: the same server, the same process, through its tus dialect (``/files/``); the last
  PATCH completes the upload (post-processing is queued), and the bench waits, untimed, for
  the Celery worker to finish it before the next leg starts;
- ``anchor``: @tus/server 2.4.5 with @tus/file-store, which computes no checksum;
- ``tus-nofsync`` (when ``chunky-gevent-nofsync`` is in the run): the tus leg on a copy of the
  site with ``CHUNKY_FSYNC=0``, which, like @tus/server, does not sync each chunk to disk.

The ratios are taken per round (the legs of one round ran back to back) and reported as the
median with the lowest and highest round: tus / anchor and tus / chunky.
"""

from __future__ import annotations

import statistics
import time

from .client import Chunky, Connection, HTTPError, Tus, check, upload
from .servers import Server
from .workloads import _record as record

OURS = "chunky-gevent"  # the production configuration (deploy/gunicorn.conf.py)
NOFSYNC = "chunky-gevent-nofsync"
ANCHOR = "tus"
LEGS = ("chunky", "tus", "anchor", "tus-nofsync")
RATIOS = {  # name: (numerator leg, denominator leg, target or None)
    "tus / @tus/server": ("tus", "anchor", 1.0),
    "tus / chunky": ("tus", "chunky", 0.95),
    "tus, CHUNKY_FSYNC=0 / @tus/server": ("tus-nofsync", "anchor", None),
}


def _wait_finalized(server: Server, upload_id: str, timeout: float = 120) -> None:
    """Untimed: until the worker has finished the upload the tus leg completed."""
    conn = Connection(server.url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status = check(conn.request("GET", f"/upload/{upload_id}/")).json()["status"]
            if status == "complete":
                return
            if status not in ("processing", "uploading"):
                raise HTTPError(f"the tus upload ended as {status}")
            time.sleep(0.01)
    finally:
        conn.close()
    raise HTTPError("the tus upload was not finalized in time")


def _one(leg: str, server: Server, source: str, size: int, chunk: int) -> dict:
    if leg == "chunky":
        result = upload(Chunky(server.url), source, size, chunk, complete=True)
    elif leg.startswith("tus"):
        result = upload(Tus(server.url), source, size, chunk)
        t = time.perf_counter()
        _wait_finalized(server, result.key)
        result.completion_ms = (time.perf_counter() - t) * 1000
    else:
        result = upload(Tus(server.url), source, size, chunk)
    return record(result)


def run(servers: list[Server], source: str, sizes: dict) -> list[dict]:
    by_name = {s.name: s for s in servers}
    if OURS not in by_name or ANCHOR not in by_name:
        print(f"bench: the tus workload needs the servers {OURS} and {ANCHOR}; skipped", flush=True)
        return []
    where = {"chunky": OURS, "tus": OURS, "anchor": ANCHOR, "tus-nofsync": NOFSYNC}
    legs = {leg: by_name[name] for leg, name in where.items() if name in by_name}
    for leg, server in legs.items():  # untimed: each web process's first requests (imports...)
        for _ in range(4):
            _one(leg, server, source, 1 << 20, 64 << 10)
        server.wipe()
    records: list[dict] = []
    names = list(legs)
    for rnd in range(sizes["rounds"]):
        print(f"bench: tus workload, round {rnd + 1} of {sizes['rounds']}", flush=True)
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for size, chunk in sizes["tus"]:
            for leg in order:
                label = f"tus {_size(size)}/{_size(chunk)} {leg:<11}"
                try:
                    value = _one(leg, legs[leg], source, size, chunk)
                    print(
                        f"  {label} {value['mb_s']:8.1f} MB/s  {value['chunk_ms']:9.2f} ms/chunk",
                        flush=True,
                    )
                except Exception as e:
                    value = {"error": f"{type(e).__name__}: {e}"[:300]}
                    print(f"  {label} FAILED {value['error']}", flush=True)
                records.append({"size": size, "chunk": chunk, "leg": leg, "round": rnd, **value})
                legs[leg].wipe()
    return records


def _size(n: int) -> str:
    return (
        f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
    )


def summary(records: list[dict]) -> list[dict]:
    """Per size: each leg's median MB/s and ms/chunk; each ratio's median, lowest and highest
    over the rounds (a ratio within one round: its legs ran back to back)."""
    out = []
    for size, chunk in dict.fromkeys((r["size"], r["chunk"]) for r in records):
        rows = [r for r in records if (r["size"], r["chunk"]) == (size, chunk)]
        rounds: dict[int, dict[str, float]] = {}
        for r in rows:
            if "mb_s" in r:
                rounds.setdefault(r["round"], {})[r["leg"]] = r["mb_s"]
        entry: dict = {"size": size, "chunk": chunk, "legs": {}, "ratios": {}}
        for leg in (leg for leg in LEGS if any(r["leg"] == leg for r in rows)):
            good = [r for r in rows if r["leg"] == leg and "mb_s" in r]
            entry["legs"][leg] = {
                "runs": len(good),
                "errors": [r["error"] for r in rows if r["leg"] == leg and "error" in r],
                **{
                    m: statistics.median(r[m] for r in good)
                    for m in ("mb_s", "chunk_ms", "completion_ms")
                    if good and all(m in r for r in good)
                },
            }
        for name, (a, b, target) in RATIOS.items():
            values = [v[a] / v[b] for v in rounds.values() if a in v and b in v]
            if values:
                median = statistics.median(values)
                entry["ratios"][name] = {
                    "median": median,
                    "min": min(values),
                    "max": max(values),
                    "rounds": len(values),
                    "met": None if target is None else median >= target,
                }
        out.append(entry)
    return out


def table(records: list[dict]) -> str:
    entries = summary(records)
    nofsync = any("tus-nofsync" in e["legs"] for e in entries)
    head = "| upload | chunky dialect | tus dialect | @tus/server 2.4.5 |"
    head += " tus, CHUNKY_FSYNC=0 |" if nofsync else ""
    head += " tus / @tus/server | tus / chunky |"
    head += " tus, CHUNKY_FSYNC=0 / @tus/server |" if nofsync else ""
    lines = [
        "tus (issue 9): the bundled site under gunicorn gevent through its tus dialect (`/files/`) and "
        "its chunky dialect (`/upload/`), and @tus/server 2.4.5 (no checksum, no fsync), one client. "
        "MB/s and median ms per chunk (median of the rounds); ratios per round: median [lowest, "
        "highest]. Targets: tus / @tus/server >= 1.0 (8 MiB chunks), tus / chunky >= 0.95.",
        "",
        head,
        "|---" * head.count(" | ") + "|---|",
    ]
    for e in entries:

        def leg(name: str, e: dict = e) -> str:
            cell = e["legs"].get(name, {})
            if "mb_s" not in cell:
                return "error" if cell.get("errors") else "-"
            return f"{cell['mb_s']:.0f} MB/s, {cell['chunk_ms']:.2f} ms"

        def ratio(name: str, e: dict = e) -> str:
            r = e["ratios"].get(name)
            if not r:
                return "-"
            return f"{r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"

        cells = [f"{_size(e['size'])} in {_size(e['chunk'])} chunks", leg("chunky"), leg("tus")]
        cells += [leg("anchor")] + ([leg("tus-nofsync")] if nofsync else [])
        cells += [ratio("tus / @tus/server"), ratio("tus / chunky")]
        cells += [ratio("tus, CHUNKY_FSYNC=0 / @tus/server")] if nofsync else []
        lines.append("| " + " | ".join(cells) + " |")
    rounds = max((r["round"] for r in records), default=-1) + 1
    lines += ["", f"{rounds} interleaved round(s), the legs' order rotating each round."]
    return "\n".join(lines)
