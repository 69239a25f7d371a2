#!/usr/bin/env bash
# Starts the bundled service. Without REDIS_URL: one gunicorn process on the embedded
# fakeredis, Celery tasks run eagerly inside it. With REDIS_URL: gunicorn plus a Celery
# worker and beat, all stopped together on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PYTHONPATH="deploy${PYTHONPATH:+:$PYTHONPATH}"
export PORT="${PORT:-8000}"
mkdir -p var
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT INT TERM
if [ -n "${REDIS_URL:-}" ]; then
  echo "chunky_redis: Redis at $REDIS_URL; starting a Celery worker and beat beside the web server"
  "$BIN/celery" -A tasks worker --loglevel=INFO & pids+=($!)
  "$BIN/celery" -A tasks beat --loglevel=INFO --schedule=var/celerybeat-schedule & pids+=($!)
else
  echo "chunky_redis: no REDIS_URL, using the embedded fakeredis and eager tasks (one process; for trying it out)"
fi
echo "chunky_redis: serving on http://${HOST:-127.0.0.1}:$PORT/"
"$BIN/gunicorn" -c deploy/gunicorn.conf.py chunky_site.wsgi & pids+=($!)
wait -n
