import sys
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
from chunky_redis import runtime
N_WARM = 20
def run_n(n):
    global N
    old = N; N = n; run(); N = old
run_n(N_WARM)
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
if sys.argv[4] == "lean":
    store._acquire = Lean(store._acquire); store._commit = Lean(store._commit)
run()
