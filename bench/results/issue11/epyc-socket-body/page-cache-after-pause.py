"""How long a pwrite of 1 MiB into the page cache takes: in a loop, after a pause, and after
touching memory first. A probe of this session's machine (a VM), not a benchmark of the service:
python bench/results/issue11/epyc-socket-body/page-cache-after-pause.py"""
import os, time, ctypes, pathlib
WORK = pathlib.Path(__file__).resolve().parents[3] / ".work"
WORK.mkdir(exist_ok=True)
libc = ctypes.CDLL("libc.so.6", use_errno=True)
sfr = libc.sync_file_range; sfr.argtypes=[ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
d = os.urandom(1<<20)
def run(use_sfr, sync_every=16):
    path = str(WORK / "wrtest.bin")
    fd = os.open(path, os.O_WRONLY|os.O_CREAT|os.O_TRUNC, 0o600)
    tw = 0.0; ts = 0.0
    for i in range(256):
        t = time.perf_counter(); os.pwrite(fd, d, i<<20); tw += time.perf_counter()-t
        if use_sfr:
            t = time.perf_counter(); sfr(fd, i<<20, 1<<20, 2); ts += time.perf_counter()-t
        if (i+1) % sync_every == 0:
            os.fdatasync(fd)
    os.close(fd); os.unlink(path)
    return tw*1000/256, ts*1000/256
for r in range(3):
    for u in (False, True):
        w, s = run(u); print("sfr" if u else "plain", f"pwrite {w:.2f} ms/MiB  sfr {s:.2f} ms/MiB")
print("with pauses")
for pause in (0, 1, 3, 10):
    time.sleep(pause); w, s = run(False); print(f"after {pause}s pause: pwrite {w:.2f} ms/MiB")
print("with pauses, then 512 MiB touched and freed just before")
for pause in (3, 3, 3):
    time.sleep(pause)
    t = time.perf_counter(); b = bytearray(512 << 20); del b; tt = time.perf_counter() - t
    w, s = run(False); print(f"touch {tt*1000:.0f} ms; pwrite {w:.2f} ms/MiB")
