import sys
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
N2 = int(sys.argv[4]); what = sys.argv[5]
st, b = call("PUT", "/upload/", data, {"CONTENT_TYPE": "application/octet-stream", "HTTP_CONTENT_RANGE": f"bytes 0-{CHUNK-1}/{CHUNK*1000}", "HTTP_CONTENT_DISPOSITION": 'attachment; filename="x.bin"'})
uid = json.loads(b)["upload_id"]
from chunky_redis import runtime
store = runtime.get_store()
rec = store.get(uid)
keys = [store.record_key(uid), store.lock_key(uid)]
import hashlib
from chunky_redis.core.store import unpack_fields
from chunky_redis.core.records import Upload
from chunky_redis.core.checksums import ResumableHash
h = ResumableHash("md5")
for i in range(N2):
    if what == "raw_acquire":
        store._acquire(keys=keys, args=[rec.owner, "tok", 30000, store.now(), 1, ""]); store.redis.delete(keys[1])
    elif what == "acquire":
        store.acquire(uid, rec.owner, "tok"); store.redis.delete(keys[1])
    elif what == "raw_unpack":
        res = store._acquire(keys=keys, args=[rec.owner, "tok", 30000, store.now(), 1, ""]); store.redis.delete(keys[1])
        f = unpack_fields(res[2], res[3])
    elif what == "raw_unpack_from":
        res = store._acquire(keys=keys, args=[rec.owner, "tok", 30000, store.now(), 1, ""]); store.redis.delete(keys[1])
        Upload.from_redis(uid, unpack_fields(res[2], res[3]))
    elif what == "acquire_once":
        store._acquire_once(uid, rec.owner, "tok", True); store.redis.delete(keys[1])
    elif what == "delete":
        store.redis.delete(keys[1])
    elif what == "md5":
        h.update(data)
    elif what == "ping":
        store.redis.ping()
