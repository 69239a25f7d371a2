import sys, statistics, time, collections
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
from chunky_redis.protocols import chunky as C, bodies as B
from chunky_redis.core import session as S, store as ST, uploads as U, context as CX, http as H
from chunky_redis import runtime
from django.core.handlers import wsgi as W
T = collections.defaultdict(list)
def wrap(obj, name, label=None):
    f = getattr(obj, name); label = label or f"{getattr(obj,'__name__',obj)}.{name}"
    def w(*a, **k):
        t = time.perf_counter()
        try: return f(*a, **k)
        finally: T[label].append(time.perf_counter() - t)
    setattr(obj, name, w)
for obj, name in [(W.WSGIHandler, "__call__"), (C.ChunkedUploadView, "put"), (C.ChunkedUploadView, "_start"),
                  (B, "inspect"), (C, "parse_content_range"), (C.ChunkedUploadView, "get_owner"), (C.ChunkedUploadView, "get_quota"), (C.ChunkedUploadView, "get_max_bytes"), (C.ChunkedUploadView, "check_permissions"), (C.ChunkedUploadView, "enforce_csrf"),
                  (C.ChunkedUploadView, "get_service"), (U.UploadService, "start_chunk"), (CX.UploadContext, "lock"), (ST.UploadStore, "acquire"), (ST.UploadStore, "_acquire_once"), (S.ChunkSession, "__init__"),
                  (B, "stream"), (S.ChunkSession, "write"), (S.ChunkSession, "finish"), (S.ChunkSession, "_check_received"), (ST.UploadStore, "commit"), (CX.UploadContext, "durable_fields"), (C, "json_response"), (C.ChunkedUploadView, "chunk_data")]:
    wrap(obj, name)
run(); T.clear()
for i in range(3): run()
for k, v in T.items(): print(f"{statistics.median(v)*1e6:8.1f} µs  {k}")
