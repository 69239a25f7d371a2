import sys, statistics, time
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
from chunky_redis import runtime
store = runtime.shared_service().store
pool = store.redis.connection_pool
class Lean:
    def __init__(self, script): self.sha = script.sha
    def __call__(self, keys, args):
        c = pool.get_connection()
        try:
            c.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return c.read_response()
        finally:
            pool.release(c)
normal = (store._acquire, store._commit)
lean = (Lean(store._acquire), Lean(store._commit))
run()
res = {"normal": [], "lean": []}
for r in range(8):
    for name, pair in (("normal", normal), ("lean", lean)):
        store._acquire, store._commit = pair
        t = run(); res[name].append(statistics.median(t[1:-1]) * 1e6)
for k, v in res.items(): print(k, round(statistics.median(v)), [round(x) for x in v])
