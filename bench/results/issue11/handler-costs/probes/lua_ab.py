import sys, time, statistics, redis
sys.path.insert(0, "/work/main")
from chunky_redis.core import lua
r = redis.Redis()
# a realistic record: copy one live-looking hash
rec = {b"owner": b"", b"status": b"uploading", b"expires": str(int(time.time()*1000)+86400000).encode(), b"offset": b"65536", b"size": b"67108864",
       b"hash_state": bytes(range(92)), b"filename": b"bench.bin", b"created": b"1795679042000", b"algorithm": b"md5"}
for i in range(13): rec[f"f{i}".encode()] = b"x" * 10
r.delete("probe:{u}:upload", "probe:{u}:lock"); r.hset("probe:{u}:upload", mapping=rec)
keys = ["probe:{u}:upload", "probe:{u}:lock"]
variants = {"current": lua.ACQUIRE}
variants["no_rec_loop"] = lua.ACQUIRE.replace("""local rec = {}
for i = 1, #fields, 2 do rec[fields[i]] = fields[i + 1] end
""", """local rec = {}
local m = redis.call('HMGET', KEYS[1], 'owner', 'status', 'expires')
rec['owner'] = m[1]; rec['status'] = m[2]; rec['expires'] = m[3]
""")
cur = lua.ACQUIRE
variants["no_pack"] = cur.replace("""local lengths = {}
for i = 1, #fields do lengths[i] = #fields[i] end
return {'ok', now, table.concat(lengths, ','), table.concat(fields)}""", "return {'ok', now, fields}")
variants["no_set"] = cur.replace("if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'locked', now} end", "")
variants["no_time"] = cur.replace("local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)", "local now = 1")
variants["hgetall_only"] = "local f = redis.call('HGETALL', KEYS[1]) return 1"
variants["return_fields"] = "return redis.call('HGETALL', KEYS[1])"
variants["noop"] = "return 1"
scripts = {k: r.register_script(v) for k, v in variants.items()}
for k, s in scripts.items():
    s(keys=keys, args=["", "tok", 30000, int(time.time()*1000), 1, ""]); r.delete(keys[1])
r.config_set("slowlog-log-slower-than", 0)
res = {}
for rnd in range(3):
    for k, s in scripts.items():
        r.slowlog_reset()
        for i in range(300):
            s(keys=keys, args=["", "tok", 30000, int(time.time()*1000), 1, ""]); r.delete(keys[1])
        durs = [e["duration"] for e in r.slowlog_get(1000) if e["command"].startswith(b"EVALSHA")]
        res.setdefault(k, []).append(statistics.median(durs))
r.config_set("slowlog-log-slower-than", 10000)
for k, v in res.items(): print(f"{k:14s} server µs per call (median per round): {v}")
