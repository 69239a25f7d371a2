#!/usr/bin/env bash
# Starts the bundled service. Without REDIS_URL: one gunicorn process on the embedded
# fakeredis, Celery tasks run eagerly inside it. With REDIS_URL: gunicorn plus a Celery
# worker and beat. deploy/supervise.py runs the Procfile's entries: a process that dies is
# started again (with backoff, logged) and the others keep running; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONPATH="deploy${PYTHONPATH:+:$PYTHONPATH}"
export PORT="${PORT:-8000}"
mkdir -p var
names=(web)
if [ -n "${REDIS_URL:-}" ]; then
  echo "chunky_redis: Redis at $REDIS_URL; starting a Celery worker and beat beside the web server"
  names+=(worker beat)
  if [ -z "${SECRET_KEY:-}" ]; then
    # For development only: one random key per checkout, kept in var/ so sessions survive a
    # restart. Production sets SECRET_KEY itself; the settings refuse to start without it.
    keyfile="${CHUNKY_VAR_DIR:-var}/secret_key"
    mkdir -p "$(dirname "$keyfile")"
    [ -s "$keyfile" ] || python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$keyfile"
    SECRET_KEY="$(cat "$keyfile")"
    export SECRET_KEY
    echo "chunky_redis: SECRET_KEY not set; using the development key in $keyfile"
  fi
else
  echo "chunky_redis: no REDIS_URL, using the embedded fakeredis and eager tasks (one process; for trying it out)"
fi
echo "chunky_redis: serving on http://${HOST:-127.0.0.1}:$PORT/"
exec python deploy/supervise.py "${names[@]}"
