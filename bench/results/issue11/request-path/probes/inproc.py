"""In-process: the WSGI app for N chunk PUTs of one upload, real Redis; time per request."""
import sys
if "--gevent" in sys.argv:
    from gevent import monkey; monkey.patch_all()
import io, os, time, statistics, hashlib
sys.path[:0] = ["/work/main/deploy", "/work/main"]
os.environ.update(DJANGO_SETTINGS_MODULE="bench.site_settings", REDIS_URL="redis://127.0.0.1:6379/0",
    CELERY_BROKER_URL="redis://127.0.0.1:6379/0", CHUNKY_VAR_DIR="/tmp/probe/ip/var", CHUNKY_UPLOAD_DIR="/tmp/probe/ip/chunks",
    MEDIA_ROOT="/tmp/probe/ip/media", SQLITE_PATH="/tmp/probe/ip/db.sqlite3", SECRET_KEY="x", DEBUG="0", CHUNKY_FSYNC="1",
    CHUNKY_LOG_LEVEL="WARNING", CHUNKY_BENCH_KEY_PREFIX="chunky-probe", CHUNKY_BENCH_QUEUE="chunky-probe")
import django
from django.conf import settings
CHUNK = int(sys.argv[1]) * 1024; N = int(sys.argv[2]); MODE = sys.argv[3] if len(sys.argv) > 3 else "full"
if MODE == "nomw":
    os.environ["PROBE_NOMW"] = "1"
django.setup()
if MODE == "nomw":
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware", "django.contrib.auth.middleware.AuthenticationMiddleware"]
if MODE == "none":
    settings.MIDDLEWARE = []
from django.core.handlers.wsgi import WSGIHandler
app = WSGIHandler()
data = os.urandom(CHUNK)
total = CHUNK * N
def call(method, path, body, headers):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
           "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1:8000",
           "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1"}
    env.update(headers)
    out = {}
    def sr(status, h, exc=None): out["status"] = status
    body = b"".join(app(env, sr))
    return out["status"], body
import json
def run():
    uid = None; times = []
    for i in range(N):
        start = i * CHUNK
        h = {"CONTENT_TYPE": "application/octet-stream", "HTTP_CONTENT_RANGE": f"bytes {start}-{start+CHUNK-1}/{total}",
             "HTTP_CONTENT_DISPOSITION": 'attachment; filename="bench.bin"'}
        t = time.perf_counter()
        st, b = call("PUT", f"/upload/{uid}/" if uid else "/upload/", data, h)
        times.append(time.perf_counter() - t)
        assert st.startswith("200"), (st, b)
        uid = json.loads(b)["upload_id"]
    return times
import cProfile, pstats, collections
from chunky_redis.core import store as S
_all = collections.defaultdict(list)
def _wrap(cls, name):
    f = getattr(cls, name)
    def w(*a, **k):
        t = time.perf_counter()
        try: return f(*a, **k)
        finally: _all[name].append(time.perf_counter() - t)
    setattr(cls, name, w)
_wrap(S.UploadStore, "acquire"); _wrap(S.UploadStore, "commit")
run()
ts = []
for r in range(5):
    t = run(); ts.append(statistics.median(t[1:-1]))
print(MODE, CHUNK >> 10, "KiB: median µs/request", [round(x * 1e6) for x in ts], {k: round(statistics.median(v) * 1e6) for k, v in _all.items()})
if "--prof" in sys.argv:
    pr = cProfile.Profile(); pr.enable(); run(); pr.disable()
    st = pstats.Stats(pr); st.sort_stats(sys.argv[-1] if sys.argv[-1] in ("tottime","cumulative") else "cumulative").print_stats(45)
if "--bypkg" in sys.argv:
    import re
    pr = cProfile.Profile(); pr.enable(); run(); pr.disable()
    st = pstats.Stats(pr); agg = collections.Counter()
    for (fn, ln, name), (cc, nc, tt, ct, callers) in st.stats.items():
        m = re.search(r"site-packages/([^/]+)/([^/]+)", fn)
        if m: key = m.group(1) + ("/" + m.group(2) if m.group(1) in ("django", "redis") else "")
        elif "chunky_redis" in fn: key = "chunky_redis/" + fn.split("chunky_redis/")[1]
        elif fn == "~": key = "builtin:" + name
        else: key = fn
        agg[key] += tt
    tot = sum(agg.values())
    for k, v in agg.most_common(45): print(f"{v/N*1e6:8.1f} µs/req {100*v/tot:5.1f}%  {k}")
