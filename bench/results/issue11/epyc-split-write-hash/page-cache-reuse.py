import os, time, sys
buf = os.urandom(1<<20)
def run(n=256):
    fd = os.open('/work/main/bench/.work/pwtest', os.O_WRONLY|os.O_CREAT|os.O_TRUNC, 0o600)
    t=time.perf_counter(); c=time.process_time()
    for i in range(n): os.pwrite(fd, buf, i<<20)
    w=time.perf_counter()-t; cp=time.process_time()-c
    os.close(fd); os.unlink('/work/main/bench/.work/pwtest'); os.sync()
    return w/n*1000, cp/n*1000
for pause in [0,0,0,1,0,3,0,0]:
    time.sleep(pause)
    print(pause, "ms/MiB wall %.2f cpu %.2f" % run())
