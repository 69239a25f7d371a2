import sys, os
if os.environ.get("NOHIREDIS"):
    import redis.utils; redis.utils.HIREDIS_AVAILABLE = False
    import redis._parsers.helpers
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
run()
