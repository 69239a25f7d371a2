"""minor faults and CPU of each server's process tree during one 256 MiB upload in 8 MiB chunks."""
import os, sys, time
from pathlib import Path
sys.path.insert(0, "/work/main")
from bench.servers import Setup, tree, clean_redis
from bench.client import upload
from bench.__main__ import make_source
from bench.ab import build
from bench.workloads import wait_worker_ready

def stat(pids):
    mf = ut = st = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        mf += int(f[7]); ut += int(f[11]); st += int(f[12])
    return mf, ut, st

work = Path("/work/main/bench/.work/faults"); os.system(f"rm -rf {work}"); work.mkdir(parents=True)
size, chunk = 256 << 20, int(sys.argv[1]) << 10
src = make_source(Path("/work/main/bench/.work/ab-source-256M.bin"), size)
setup = Setup(work)
servers = [build(setup, s) for s in sys.argv[2:]]
helper = setup.worker()
try:
    helper.start(work); [s.start(work) for s in servers]
    wait_worker_ready(helper)
    for s in servers:
        s.wait_healthy(); upload(s.protocol(), str(src), 4 << 20, chunk)
    for r in range(4):
        for s in servers:
            [x.wipe() for x in servers]; os.sync()
            pids = tree(s.proc.pid)
            a = stat(pids)
            res = upload(s.protocol(), str(src), size, chunk)
            b = stat(pids)
            print(f"{s.name:12} {res.mb_s:7.1f} MB/s  minflt/MiB {(b[0]-a[0])/256:7.1f}  utime {(b[1]-a[1])} stime {(b[2]-a[2])} ticks", flush=True)
finally:
    for s in [*servers, helper]: s.stop()
    clean_redis(setup.key_prefix)
