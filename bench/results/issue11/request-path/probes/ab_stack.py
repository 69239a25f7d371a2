import sys, statistics, time, os
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
from chunky_redis import runtime
from chunky_redis.core.direct_scripts import DirectScript
store = runtime.shared_service().store
pool = store.redis.connection_pool
free = []
def direct_stack(self, pool_, keys, args):
    try: conn = free.pop()
    except IndexError: conn = pool.get_connection()
    try:
        r = conn.retry.call_with_retry(lambda: self._evalsha(conn, keys, args), lambda e: conn.disconnect())
    except BaseException:
        conn.disconnect(); pool.release(conn); raise
    free.append(conn)
    return r
orig = DirectScript.direct
run()
res = {"pool": [], "stack": []}
for r in range(12):
    for name, fn in (("pool", orig), ("stack", direct_stack)):
        DirectScript.direct = fn
        t = run(); res[name].append(statistics.median(t[1:-1]) * 1e6)
for k, v in res.items(): print(k, round(statistics.median(v)), [round(x) for x in v])
