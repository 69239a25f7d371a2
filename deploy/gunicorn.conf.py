"""gunicorn settings for the bundled service. Every value can be overridden from the environment."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Measured with `make bench` (bench/results/): for 8 MiB chunks gthread, sync, pyuwsgi and granian
# are within 2% of each other and of the md5+pwrite null server; gunicorn 27 reads a known-length
# body up to 1 MiB per recv(), so the old 8 KiB unreader limit no longer matters. gthread keeps
# connections alive and lets one process serve several slow uploads (a sync worker is held by one
# slow client); workers spread CPU (hashing) over cores. Note: "sync" with threads > 1 *is* gthread.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# The embedded fakeredis (no REDIS_URL) lives inside one process, so it gets exactly one.
_default_workers = multiprocessing.cpu_count() if os.environ.get("REDIS_URL") else 1
workers = int(os.environ.get("WEB_CONCURRENCY", str(_default_workers)))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A large chunk on a slow link takes time: don't kill the worker in the middle of one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = 60
keepalive = 75
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
# gunicorn 27's runtime control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which
# several instances on one host (two sites, tests, benchmarks) would share; the service does not use it.
control_socket_disable = True
