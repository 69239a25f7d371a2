import sys, os
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
if os.environ.get("VARIANT") == "stack":
    DirectScript.direct = direct_stack
run()
