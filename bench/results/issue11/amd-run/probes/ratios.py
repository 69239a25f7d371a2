import json, statistics, sys, collections
d=json.load(open(sys.argv[1] if len(sys.argv)>1 else "/work/main/bench/results/results.json"))
by=collections.defaultdict(dict)
for r in d["records"]:
    if "mb_s" in r: by[(r["workload"], r["round"])][r["server"]]=r["mb_s"]
wl=sorted({w for w,_ in by})
for ours in ["chunky-gevent","chunky-gevent-eachchunk"]:
    for w in wl:
        rs=[by[(w,k)][ours]/by[(w,k)]["tus"] for (ww,k) in sorted(by) if ww==w and ours in by[(w,k)] and "tus" in by[(w,k)]]
        if rs: print(f"{ours:24s} {w:14s} vs tus median {statistics.median(rs):.2f} [{min(rs):.2f}, {max(rs):.2f}]  rounds {[round(x,2) for x in rs]}")
    for w in ["w1-raw"]:
        rs=[by[(w,k)][ours]/by[(w,k)]["null-work"] for (ww,k) in sorted(by) if ww==w and ours in by[(w,k)]]
        print(f"{ours:24s} {w} vs work limit {statistics.median(rs):.2f} [{min(rs):.2f}, {max(rs):.2f}]")
