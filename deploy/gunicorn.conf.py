"""gunicorn settings for the bundled service. Every value can be overridden from the environment."""

import multiprocessing
import os
import resource

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Uploads are slow clients by nature. With gevent each connection is a greenlet, so a client that
# sends its chunk at 1 byte/s holds a few KiB, not a thread: measured with `make bench` (docs/performance.md,
# "Why gunicorn with gevent"), 1,000 such connections leave status GETs and a concurrent 1 GiB upload at full
# speed, where gthread (2 workers x 4 threads) stops answering at 8. The blocking parts of a chunk
# (hashing large blocks, fdatasync) run on gevent's native thread pool (chunky_redis/storage.py).
# GUNICORN_WORKER_CLASS=gthread brings back the threaded worker (then turn nginx buffering on).
# "gevent" is gunicorn's gevent worker that also closes idle keep-alive connections at shutdown
# (deploy/chunky_site/gevent_worker.py), so a restart does not wait graceful_timeout for them.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    worker_class = "chunky_site.gevent_worker.GeventWorker"
    # Patch before the master imports the worker class's package (chunky_site -> tasks -> the
    # Django settings, which may import botocore for AWS_S3_CLIENT_CONFIG): urllib3 imported
    # unpatched makes every TLS context the workers build recurse (RecursionError), and web
    # workers build one as soon as they talk to S3 (CHUNKY_REDIS_CHUNK_STORAGE = "s3").
    from gevent import monkey

    monkey.patch_all()
# The embedded fakeredis (no REDIS_URL) lives inside one process, so it gets exactly one.
_default_workers = multiprocessing.cpu_count() if os.environ.get("REDIS_URL") else 1
workers = int(os.environ.get("WEB_CONCURRENCY", str(_default_workers)))
# Connections one gevent worker serves at once (further ones wait in the listen backlog).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
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
