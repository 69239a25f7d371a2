"""Interleaved rounds: ms per 64 KiB chunk request, several servers, one client."""
import os, sys, time, statistics, signal, subprocess
from pathlib import Path
sys.path[:0] = ["/work/main"]
from bench.servers import Setup, Server, free_port, chunky_protocol, BIN, REPO, clean_redis
from bench.client import upload, Chunky
from bench.workloads import wait_worker_ready, parallel_uploads
PAR = int(os.environ.get('PAR', '0'))
work = Path("/tmp/probe/work"); work.mkdir(parents=True, exist_ok=True)
setup = Setup(work)
chunk = int(sys.argv[1]) * 1024; size = int(sys.argv[2]) << 20; rounds = int(sys.argv[3])
names = sys.argv[4].split(",")
servers = []
for name in names:
    if name.startswith("floor"):
        port = free_port()
        env = dict(os.environ, PYTHONPATH=f"/tmp/probe:{REPO/'deploy'}", PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="2",
                   FLOOR_MODE=name.split("-")[1] if "-" in name else "read")
        servers.append(Server(name, name, "null", [str(BIN/"gunicorn"), "-c", "deploy/gunicorn.conf.py", (os.environ.get("FLOORAPP","floorapp") + ":app")], env, chunky_protocol, [], port=port))
    elif name.startswith("null-"):
        servers.append(setup.null(name[5:]))
    elif name == "tus":
        servers.append(setup.tus())
    elif name.startswith("base@"):  # base@REF: the gevent server on git revision REF's code
        from bench.cpucost import export_revision
        root = export_revision(name[5:])
        s = setup.chunky("gevent"); s.name = name
        s.env["PYTHONPATH"] = os.pathsep.join([str(root / "deploy"), str(root)])
        s.args[2] = str(root / "deploy" / "gunicorn.conf.py"); s.cwd = root
        servers.append(s)
    elif name.startswith("chunky"):
        s = setup.chunky("gevent"); s.name = name
        if name.startswith("chunky-nohiredis"):
            from bench.cpucost import hide_hiredis
            s.env["PYTHONPATH"] = os.pathsep.join([str(hide_hiredis()), s.env["PYTHONPATH"]])
        if ":" in name:  # chunky:ENV=VAL
            k, v = name.split(":", 1)[1].split("=", 1); s.env[k] = v
        servers.append(s)
helpers = [setup.worker()] if any(s.kind == "chunky" for s in servers) else []
src = work / "src.bin"
if not src.exists() or src.stat().st_size != size:
    src.write_bytes(os.urandom(size))
res = {s.name: [] for s in servers}; lat = {}; cpu = {}
try:
    for s in helpers + servers:
        s.start(work / "logs")
    if helpers: wait_worker_ready(helpers[0])
    for s in servers: s.wait_healthy()
    for s in servers:  # warm-up
        upload(s.protocol(), str(src), min(size, 4 << 20), chunk)
    spy = None
    if os.environ.get("PYSPY"):
        target = [s for s in servers if s.name.startswith("chunky")][0]
        spy = subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "--subprocesses", "--rate", "2000", "--format", os.environ.get("PYSPY_FMT","raw"), "-o", os.environ["PYSPY"], "--pid", str(target.proc.pid)] + os.environ.get("PYSPY_ARGS","").split())
        time.sleep(2)
    for r in range(rounds):
        k = r % len(servers) if os.environ.get('ROTATE', '1') == '1' else 0
        for s in servers[k:] + servers[:k]:
            for x in servers:
                if x.kind != "null": x.wipe()
            os.sync()
            if PAR:
                results, secs = parallel_uploads(s.protocol, str(src), PAR, size // PAR, chunk)
                class R: pass
                result = R(); result.mb_s = size / secs / 1e6; result.chunk_ms = [m for r in results for m in r.chunk_ms]
            else:
                from bench.cpucost import cpu_seconds
                u0, s0 = cpu_seconds(s.proc.pid)
                result = upload(s.protocol(), str(src), size, chunk)
                u1, s1 = cpu_seconds(s.proc.pid)
                cpu.setdefault(s.name, []).append((u1 - u0 + s1 - s0) * (1 << 30) / size)
            res[s.name].append(result.mb_s); cm=sorted(result.chunk_ms); lat.setdefault(s.name,[]).append((statistics.mean(cm), cm[len(cm)//2], cm[int(len(cm)*.9)], cm[int(len(cm)*.99)], cm[-1], sum(x for x in cm if x>3*cm[len(cm)//2])/sum(cm)))
            if s.kind != "null": s.wipe()
    if spy: spy.send_signal(signal.SIGINT); spy.wait()
    for k,v in lat.items():
        print(k, 'mean/p50/p90/p99/max ms, share of time in >3x-median requests:', [tuple(round(x,2) for x in r) for r in v])
    for k, v in cpu.items(): print(k, 'CPU-s/GiB', [round(x, 2) for x in v], 'median', round(statistics.median(v), 2))
    base = names[-1]
    for s in servers:
        ratios = [a / b for a, b in zip(res[s.name], res[base])]
        print(f"{s.name:30s} MB/s median {statistics.median(res[s.name]):.1f} rounds {[round(x,1) for x in res[s.name]]}  speed vs {base}: {statistics.median(ratios):.2f} [{min(ratios):.2f},{max(ratios):.2f}]")
finally:
    for s in servers + helpers:
        s.stop()
    clean_redis(setup.key_prefix)
