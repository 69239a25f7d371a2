"""Medians over rounds, ratios to the work-limit null server, the tables, the targets, JSON and the plot."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

REFERENCE = "null-work"
METRICS = ("mb_s", "chunk_ms", "completion_ms", "peak_rss_mib", "rss_increase_mib")


def assemble(
    records: list[dict], servers, sizes: dict, machine: dict, elapsed: float, *, quick: bool
) -> dict:
    medians: dict[str, dict[str, dict]] = {}
    for workload in dict.fromkeys(r["workload"] for r in records):
        for server in dict.fromkeys(r["server"] for r in records if r["workload"] == workload):
            rows = [r for r in records if r["workload"] == workload and r["server"] == server]
            good = [r for r in rows if "error" not in r]
            cell: dict = {"runs": len(good)}
            for m in METRICS:
                values = [r[m] for r in good if m in r]
                if values:
                    cell[m] = statistics.median(values)
            if len(good) < len(rows):
                cell["errors"] = [r["error"] for r in rows if "error" in r]
            medians.setdefault(workload, {})[server] = cell
    for workload, cells in medians.items():
        # multipart has no null-server counterpart: its reference is the same upload as a raw body
        ref = (
            cells.get(REFERENCE) or medians.get("w1-raw", {}).get(REFERENCE, {})
            if workload == "w1-multipart"
            else cells.get(REFERENCE, {})
        )
        for cell in cells.values():
            cell["ratio"] = {m: cell[m] / ref[m] for m in METRICS if m in cell and ref.get(m)}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "quick": quick,
        "elapsed_s": round(elapsed, 1),
        "machine": machine,
        "sizes": sizes,
        "servers": {s.name: s.label for s in servers},
        "reference": REFERENCE,
        "results": medians,
        "targets": targets(medians, [s.name for s in servers]),
        "records": records,
    }


def _get(medians: dict, workload: str, server: str, metric: str):
    return medians.get(workload, {}).get(server, {}).get(metric)


def _w1(medians: dict, server: str):
    """A server's workload-1 throughput: raw body, or multipart for a server that takes only that."""
    return _get(medians, "w1-raw", server, "mb_s") or _get(medians, "w1-multipart", server, "mb_s")


def targets(medians: dict, servers: list[str]) -> dict:
    out = {}
    w4 = sorted((w for w in medians if w.startswith("w4-")), key=lambda w: int(w[3:-1]))
    for s in (s for s in servers if s.startswith("chunky-")):
        checks = []

        def ratio(label, a, b, minimum, checks=checks):
            value = a / b if a and b else None
            checks.append(
                {
                    "target": label,
                    "value": value,
                    "need": f">= {minimum}",
                    "met": value is not None and value >= minimum,
                }
            )

        ratio("w1 raw / work limit", _w1(medians, s), _w1(medians, REFERENCE), 0.90)
        ratio(
            "w1 / django-chunked-upload",
            _w1(medians, s),
            _w1(medians, "django-chunked-upload"),
            1.8,
        )
        ratio("w1 / @tus/server", _w1(medians, s), _w1(medians, "tus"), 0.9)
        ratio(
            "w2 / work limit",
            _get(medians, "w2", s, "mb_s"),
            _get(medians, "w2", REFERENCE, "mb_s"),
            0.60,
        )
        ratio(
            "w2 / @tus/server",
            _get(medians, "w2", s, "mb_s"),
            _get(medians, "w2", "tus", "mb_s"),
            1.5,
        )
        small = _get(medians, w4[0], s, "completion_ms") if w4 else None
        big = _get(medians, "w1-raw", s, "completion_ms")
        growth = big / small if big and small else None
        checks.append(
            {
                "target": "completion largest / 16 MiB",
                "value": growth,
                "need": "<= 3",
                "met": growth is not None and growth <= 3,
            }
        )
        checks.append(
            {
                "target": "completion of the largest (ms)",
                "value": big,
                "need": "< 100",
                "met": big is not None and big < 100,
            }
        )
        rss = _get(medians, "w5", s, "rss_increase_mib")
        checks.append(
            {
                "target": "+RSS receiving one big chunk (MiB)",
                "value": rss,
                "need": "< 64",
                "met": rss is not None and rss < 64,
            }
        )
        out[s] = checks
    return out


def paired_rows(
    results: dict[str, dict[str, list]], base: str, other: str, unit_for, digits: int
) -> list[str]:
    """Table rows comparing two server configurations measured in the same rounds: per
    workload, the median rate of each (``(rate, ms)`` pairs), their ratio, and the median chunk
    latency before -> after. ``unit_for(workload)`` names the rate's unit."""
    rows = []
    for name, by_server in results.items():
        base_rate = statistics.median(rate for rate, _ in by_server[base])
        other_rate = statistics.median(rate for rate, _ in by_server[other])
        base_ms = statistics.median(ms for _, ms in by_server[base])
        other_ms = statistics.median(ms for _, ms in by_server[other])
        unit = unit_for(name)
        rows.append(
            f"| {name} | {base_rate:.1f} {unit} | {other_rate:.1f} {unit} "
            f"| {other_rate / base_rate:.{digits}f} "
            f"| {base_ms:.{digits}f} -> {other_ms:.{digits}f} ms |"
        )
    return rows


def _fmt(value, digits=0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cell(medians, workload, server, metric, digits=0) -> str:
    cell = medians.get(workload, {}).get(server)
    if not cell:
        return "-"
    if metric not in cell:
        return "error" if cell.get("errors") else "-"
    ratio = cell["ratio"].get(metric)
    return _fmt(cell[metric], digits) + (
        f" ({ratio:.2f})" if ratio is not None and server != REFERENCE else ""
    )


def table(data: dict) -> str:
    m, servers, sizes = data["results"], data["servers"], data["sizes"]
    w1, w2 = f"{sizes['w1'] >> 20} MiB", f"{sizes['w2'] >> 20} MiB"
    lines = [
        f"Throughput, MB/s (ratio to the work-limit null server). w1: {w1} in {sizes['w1_chunk'] >> 20} MiB chunks; "
        f"w2: {w2} in {sizes['w2_chunk'] >> 10} KiB chunks; w3: 8 concurrent x {sizes['w3_each'] >> 20} MiB in "
        f"{sizes['w3_chunk'] >> 20} MiB chunks; w5: one {sizes['w5'] >> 20} MiB chunk.",
        "",
        "| server | w1 raw | w1 multipart | w2 | w3 (aggregate) | w5 one chunk |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in servers.items():
        lines.append(
            f"| {label} | "
            + " | ".join(
                _cell(m, w, name, "mb_s") for w in ("w1-raw", "w1-multipart", "w2", "w3", "w5")
            )
            + " |"
        )
    w4 = sorted((w for w in m if w.startswith("w4-")), key=lambda w: int(w[3:-1]))
    lines += [
        "",
        "Median ms per chunk request, completion ms (POST until the status reads complete), peak RSS of a web "
        "worker in MiB (ratio to the work-limit null server).",
        "",
        "| server | ms/chunk w1 raw | ms/chunk w2 | "
        + " | ".join(f"completion {w[3:-1]} MiB" for w in w4)
        + f" | completion {w1} | peak RSS w1 | +RSS one {sizes['w5'] >> 20} MiB chunk |",
        "|---|---|---|" + "---|" * len(w4) + "---|---|---|",
    ]
    for name, label in servers.items():
        w1name = "w1-raw" if name in m.get("w1-raw", {}) else "w1-multipart"
        cells = [_cell(m, w1name, name, "chunk_ms", 1), _cell(m, "w2", name, "chunk_ms", 2)]
        cells += [_cell(m, w, name, "completion_ms", 1) for w in w4]
        cells += [
            _cell(m, w1name, name, "completion_ms", 1),
            _cell(m, w1name, name, "peak_rss_mib"),
            _cell(m, "w5", name, "rss_increase_mib"),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets (issue 5), per chunky_redis server configuration:",
        "",
        "| configuration | "
        + " | ".join(
            c["target"] + " " + c["need"] for c in next(iter(data["targets"].values()), [])
        )
        + " |",
        "|---|" + "---|" * len(next(iter(data["targets"].values()), [])),
    ]
    for name, checks in data["targets"].items():
        lines.append(
            f"| {servers[name]} | "
            + " | ".join((_fmt(c["value"], 2) + (" ok" if c["met"] else " MISSED")) for c in checks)
            + " |"
        )
    mc = data["machine"]
    lines += [
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gib']} GiB, Linux {mc['kernel']}, "
        f"Python {mc['python']}; {data['date']}; {data['sizes']['rounds']} interleaved rounds, medians; "
        f"run took {data['elapsed_s']:.0f} s; load average before the run {mc.get('loadavg', '?')}.",
    ]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install --group bench); no plot")
        return
    m, sizes = data["results"], data["sizes"]
    if not m:
        return  # only the slow-client workload ran: it has no throughput curve
    points = {"w2": sizes["w2_chunk"], "w5": sizes["w5"]}
    points.update({f"sweep-{c >> 10}K": c for c in sizes["sweep_chunks"]})
    fig, ax = plt.subplots(figsize=(11.5, 5.5))
    for name, label in data["servers"].items():
        xs, ys = [], []
        w1 = "w1-raw" if name in m.get("w1-raw", {}) else "w1-multipart"
        for workload, chunk in [*points.items(), (w1, sizes["w1_chunk"])]:
            value = m.get(workload, {}).get(name, {}).get("mb_s")
            if value:
                xs.append(chunk)
                ys.append(value)
        if xs:
            order = sorted(range(len(xs)), key=xs.__getitem__)
            style = "--" if name.startswith("null-") else "-"
            ax.plot([xs[i] for i in order], [ys[i] for i in order], style, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted({sizes["w2_chunk"], sizes["w1_chunk"], sizes["w5"], *sizes["sweep_chunks"]})
    ax.set_xticks(ticks, [f"{t >> 10} KiB" if t < 1 << 20 else f"{t >> 20} MiB" for t in ticks])
    ax.set_xlabel("chunk size (one client, keep-alive, loopback)")
    ax.set_ylabel("MB/s")
    mc = data["machine"]
    ax.set_title(f"Upload throughput by chunk size ({mc['cores']} cores, {data['date'][:10]})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict, text: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    (out / "results.md").write_text(text + "\n")
    plot(data, out / "throughput.png")
