"""Start the bench's chunky-gevent (+worker), upload with MONITOR counting Redis commands, CPU per request."""
import sys, threading, time, collections, os
sys.path.insert(0, "/work/main")
from pathlib import Path
import redis
from bench.servers import Setup, clean_redis
from bench.client import upload
from bench.cpucost import cpu_seconds
chunk = int(sys.argv[1]) * 1024
size = int(sys.argv[2]) << 20
run = Path("/tmp/probe/run"); os.system(f"rm -rf {run}"); run.mkdir(parents=True)
setup = Setup(run)
srv = setup.chunky("gevent", workers=int(os.environ.get("W","2"))); wk = setup.worker()
if os.environ.get("CONF"):
    srv.args = [a if a != "deploy/gunicorn.conf.py" else os.environ["CONF"] for a in srv.args]
    print(srv.args)
for s in (wk, srv): s.start(run)
srv.wait_healthy()
src = "/work/main/bench/.work/source-1024M.bin"
proto = srv.protocol()
upload(proto, src, 4 << 20, chunk)  # warm
counts = collections.Counter(); stop = False
def mon():
    r = redis.Redis()
    with r.monitor() as m:
        for cmd in m.listen():
            if stop: break
            c = cmd["command"].split()
            counts[c[0].upper() + (" " + c[1][:12] if c[0].upper() in ("EVALSHA","FCALL") else "")] += 1
if "--monitor" in sys.argv:
    t = threading.Thread(target=mon, daemon=True); t.start(); time.sleep(0.5)
import subprocess
from bench.servers import tree
spy = None
if os.environ.get("SPY"):
    pids = [p for p in tree(srv.proc.pid) if p != srv.proc.pid]
    spy = subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "--idle", "--nonblocking", "-r", "500", "-f", "raw", "-o", os.environ["SPY"], "--pid", str(max(pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
u0, s0 = cpu_seconds(srv.proc.pid)
t0 = time.perf_counter()
res = upload(proto, src, size, chunk)
dt = time.perf_counter() - t0
u1, s1 = cpu_seconds(srv.proc.pid)
stop = True
if spy:
    spy.send_signal(2); spy.wait()
n = size // chunk
print(f"chunk {chunk>>10} KiB: {size/dt/1e6:.1f} MB/s, {dt/n*1000:.3f} ms/req wall, CPU/req user {(u1-u0)/n*1000:.3f} ms sys {(s1-s0)/n*1000:.3f} ms")
for k, v in counts.most_common(): print(f"  {k}: {v/n:.2f}/req")
for s in (srv, wk): s.stop()
clean_redis(setup.key_prefix)
