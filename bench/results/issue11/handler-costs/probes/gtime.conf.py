exec(open("/work/main/deploy/gunicorn.conf.py").read())
import time as _t, atexit as _ae, collections as _c
_acc = _c.Counter(); _cnt = _c.Counter(); _all = _c.defaultdict(list)
def _wrap(cls, name, key):
    f = getattr(cls, name)
    def w(*a, **k):
        t = _t.perf_counter()
        try:
            return f(*a, **k)
        finally:
            d = _t.perf_counter() - t; _acc[key] += d; _cnt[key] += 1; _all[key].append(d)
    setattr(cls, name, w)
_pwi = post_worker_init
def post_worker_init(worker):
    _pwi(worker)
    import gunicorn.http.body as B
    from chunky_redis.core import store as S, filesystem as F
    from gunicorn.workers import base_async as BA
    from django.core.handlers.wsgi import WSGIHandler
    _wrap(B.LengthReader, "read", "body read")
    _wrap(S.UploadStore, "acquire", "redis acquire")
    _wrap(S.UploadStore, "commit", "redis commit")
    _wrap(F.ChunkWriter, "write", "writer.write")
    _wrap(F.ChunkWriter, "close", "writer.close")
    _wrap(BA.AsyncWorker, "handle_request", "handle_request")
    _wrap(WSGIHandler, "__call__", "django app")
def worker_exit(server, worker):
    n = _cnt["handle_request"] or 1
    with open(f"/tmp/probe/timing-{os.getpid()}.txt", "w") as f:
        for k, v in _acc.most_common():
            import statistics as st
            xs = _all[k][-200:]
            f.write(f"{k:16s} {v / n * 1e6:8.0f} µs/request ({_cnt[k] / n:.2f} calls) median of last 200 {st.median(xs)*1e6:8.0f} µs p10 {sorted(xs)[20]*1e6:8.0f}\n")
