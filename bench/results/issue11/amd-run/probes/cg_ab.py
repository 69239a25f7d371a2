import sys, os
N = int(os.environ["CGN"])
src = open("/tmp/probe/inproc_root.py").read().split("import cProfile, pstats, collections")[0]
sys.argv = ["inproc", "64", str(N), "full"]
exec(src)
run()
