import os, socket, sys, time, json, tempfile, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import requests
from tests.support.processes import SiteProcess, live_env
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
tmp = pathlib.Path(tempfile.mkdtemp())
site = SiteProcess(live_env(tmp), workers=1).start()
def rss_kib(pid):
    total = 0
    for p in [pid] + [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS"):
                total += int(line.split()[1])
    return total
try:
    base = rss_kib(site.proc.pid)
    socks = []
    for i in range(N):
        r = requests.put(site.url + "/upload/", data=b"x" * 16, headers={"Content-Range": f"bytes 0-15/{16 + (8 << 20)}", "Content-Type": "application/octet-stream"})
        uid = r.json()["upload_id"]
        s = socket.create_connection(("127.0.0.1", site.port))
        s.sendall((f"PUT /upload/{uid}/ HTTP/1.1\r\nHost: x\r\nContent-Range: bytes 16-{16 + (8 << 20) - 1}/{16 + (8 << 20)}\r\n"
                   f"Content-Type: application/octet-stream\r\nContent-Length: {8 << 20}\r\n\r\n").encode() + os.urandom(1000))
        socks.append(s)
    for t in range(5):
        time.sleep(1)
        for s in socks:
            s.sendall(b"y")
    after = rss_kib(site.proc.pid)
    print(f"{N} trickling connections with 8 MiB bodies: RSS {base} -> {after} KiB, {(after - base) / N:.1f} KiB per connection")
    st = requests.get(site.url + "/healthz", timeout=10).status_code
    print("healthz", st)
finally:
    for s in socks: s.close()
    site.stop()
