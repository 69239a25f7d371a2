import os, time, threading, sys
d=os.urandom(1<<20)
mode=sys.argv[1]; total=int(sys.argv[2])
os.sync()
fd=os.open("/tmp/probe/pw.bin", os.O_WRONLY|os.O_CREAT|os.O_TRUNC)
import ctypes
libc=ctypes.CDLL('libc.so.6')
busy=threading.Lock(); syncs=[0]
def bg():
    try: os.fdatasync(fd); syncs[0]+=1
    finally: busy.release()
ws=[]; t0=time.perf_counter(); unsynced=0
for i in range(total):
    t=time.perf_counter(); os.pwrite(fd,d,i<<20); ws.append(time.perf_counter()-t)
    unsynced+=1
    if mode=="bg16" and unsynced>=16 and busy.acquire(blocking=False):
        unsynced=0; threading.Thread(target=bg).start()
    if mode=="fg16" and unsynced>=16:
        unsynced=0; os.fdatasync(fd)
    if mode.startswith("sfr"):  # start writeback of each block
        libc.sync_file_range(fd, ctypes.c_int64(i<<20), ctypes.c_int64(1<<20), 2)
    if mode=="sfrbg16" and unsynced>=16 and busy.acquire(blocking=False):
        unsynced=0; threading.Thread(target=bg).start()
busy.acquire(); el=time.perf_counter()-t0
ws.sort()
print(mode, total, "MiB: total ms/MiB %.2f, pwrite mean %.2f p50 %.2f p90 %.2f max %.1f ms, syncs %d"%(el/total*1e3, sum(ws)/len(ws)*1e3, ws[len(ws)//2]*1e3, ws[int(len(ws)*.9)]*1e3, ws[-1]*1e3, syncs[0]))
os.close(fd); os.unlink("/tmp/probe/pw.bin")
