from gevent import monkey; monkey.patch_all()
import os, time, hashlib, statistics
from gevent.threadpool import ThreadPoolExecutor
pool = ThreadPoolExecutor(max_workers=4)
N = int(os.environ.get("KB","256")) * 1024
d = os.urandom(N)
fd = os.open("/tmp/probe/pool.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
pos = [0]
def w():
    os.pwrite(fd, d, pos[0]); pos[0] += N
h = hashlib.md5()
def both(): w(); h.update(d)
def one():
    pool.submit(both).result()
def two():
    a = pool.submit(w); b = pool.submit(h.update, d); a.result(); b.result()
def inline(): both()
for name, f in [("one", one), ("two", two), ("inline", inline)] * 2:
    ts = []
    for i in range(400):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        if pos[0] > (256 << 20): os.ftruncate(fd, 0); pos[0] = 0
    c0 = os.times()
    print(name, "median µs", round(statistics.median(ts) * 1e6))
