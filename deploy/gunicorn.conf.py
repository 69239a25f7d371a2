"""gunicorn settings for the bundled service. Every value can be overridden from the environment."""

import ctypes
import ctypes.util
import gc
import glob
import multiprocessing
import os
import resource
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Uploads are slow clients by nature. With gevent each connection is a greenlet, so a client that
# sends its chunk at 1 byte/s holds a few KiB, not a thread: measured with `make bench` (docs/performance.md,
# "Why gunicorn with gevent"), 1,000 such connections leave status GETs and a concurrent 1 GiB upload at full
# speed, where gthread (2 workers x 4 threads) stops answering at 8. The blocking parts of a chunk
# (hashing large blocks, fdatasync) run on gevent's native thread pool (chunky_redis/storage.py).
# GUNICORN_WORKER_CLASS=gthread brings back the threaded worker (then turn nginx buffering on).
# "gevent" is gunicorn's gevent worker that also closes idle keep-alive connections at shutdown
# (deploy/chunky_gevent_worker.py), so a restart does not wait graceful_timeout for them. It is a
# module of its own, outside chunky_site, so that the master, which imports it, loads neither
# Django nor Celery nor redis-py: the workers then monkey-patch before any of them is imported.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    worker_class = "chunky_gevent_worker.GeventWorker"
# The embedded fakeredis (no REDIS_URL) lives inside one process, so it gets exactly one.
_default_workers = multiprocessing.cpu_count() if os.environ.get("REDIS_URL") else 1
workers = int(os.environ.get("WEB_CONCURRENCY", str(_default_workers)))
# Connections one gevent worker serves at once. Further ones wait in the listen backlog, status
# reads and /healthz included: one worker holding 1,000 slow clients (gunicorn's default cap) answered
# no status read at all (python -m bench.crowd_profile). An idle slow connection costs some 25-45 KiB.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "4000"))
# Only for GUNICORN_WORKER_CLASS=gthread: threads per worker.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A large chunk on a slow link takes time: don't kill the worker in the middle of one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = 60
keepalive = 75
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
# gunicorn 27's runtime control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which
# several instances on one host (two sites, tests, benchmarks) would share; the service does not use it.
control_socket_disable = True


def _raise_open_file_limit(connections: int) -> None:
    """A connection in the middle of a chunk holds a socket, the chunk file and at times a Redis
    connection; 1024, a common default soft limit, is too few for 1,000 of them. Raised up to the
    hard limit only (workers inherit it); past that, the host's configuration has to change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


_raise_open_file_limit(worker_connections)


def _keep_freed_blocks() -> None:
    """glibc's malloc, left to itself, hands the heap's freed top back to the kernel once it passes
    twice the largest block freed so far (a few MiB here), so every 1 MiB block of a chunk, and
    gunicorn's copies of it, landed on fresh pages: some 2,500 page faults and 5 ms of system CPU
    per 8 MiB chunk (docs/performance.md, "tus throughput"). Keep up to 16 MiB of freed heap and
    serve blocks under 4 MiB from it. Set here, in the master, so every worker inherits it; not
    where MALLOC_TRIM_THRESHOLD_ or MALLOC_MMAP_THRESHOLD_ choose otherwise, nor off glibc."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    mallopt(m_trim_threshold, 16 << 20)
    mallopt(m_mmap_threshold, 4 << 20)


_keep_freed_blocks()


# Prometheus metrics (CHUNKY_METRICS=1, docs/howto/metrics.md). Every worker process counts its
# own; in multiprocess mode each writes its samples into PROMETHEUS_MULTIPROC_DIR, and /metrics,
# whichever worker answers it, reads them all. Set here, in the master, before any worker forks
# (prometheus_client picks its mode when it is imported); a directory of its own when none is given.
_metrics_on = os.environ.get("CHUNKY_METRICS", "").strip().lower() in ("1", "true", "yes", "on")
if _metrics_on and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chunky-metrics-")


def on_starting(server):
    """Start without the samples of a previous run, which would be counted again (only
    prometheus_client's *.db files go: the directory may be one you chose)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if _metrics_on and directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def child_exit(server, worker):
    """A worker exited: drop its live gauges (its counters stay counted, as Prometheus expects)."""
    if _metrics_on and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """The application is loaded: move everything it allocated so far out of the garbage
    collector's reach. Django's modules, settings and URL patterns live as long as the worker, yet
    every full collection walked them again: about 20 us per 64 KiB chunk request, half the
    collector's time there (docs/performance.md, "The per-request cost of a small chunk")."""
    gc.freeze()
