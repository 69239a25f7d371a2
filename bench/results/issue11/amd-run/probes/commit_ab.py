import redis, sys, time, statistics, importlib.util
def load(root):
    spec=importlib.util.spec_from_file_location("lua_"+root.replace("/","_"), root+"/chunky_redis/core/lua.py"); m=importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m
old, new = load("/tmp/base").COMMIT, load("/work/main").COMMIT
r=redis.Redis()
src=[k for k in r.scan_iter("chunky-probe:*:upload")][0]
keys=["t:{c}:upload","t:{c}:lock"]
res={"old":[], "new":[]}
scripts={"old": r.register_script(old), "new": r.register_script(new)}
for rnd in range(7):
    for name, s in scripts.items():
        r.delete(*keys); r.copy(src, keys[0])
        off=int(r.hget(keys[0],"offset")); exp=int(time.time()*1000)+10**7
        r.hset(keys[0], mapping={"expires": exp, "status": "uploading"})
        tot=0
        for i in range(1000):
            r.set(keys[1], "tok")
            r.config_resetstat() if i == 0 else None
            out=s(keys=keys, args=["tok", off, off+65536, bytes(92), exp, exp+10**6, int(time.time()*1000), "boot", "abc"*10])
            assert out==b"ok", out
            off+=65536
        st=r.info("commandstats")["cmdstat_evalsha"]; res[name].append(st["usec"]/st["calls"])
for k,v in res.items(): print(k, "µs per COMMIT in Redis, median of 7 rounds:", round(statistics.median(v),1), sorted(round(x,1) for x in v))
