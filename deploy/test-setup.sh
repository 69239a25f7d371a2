#!/usr/bin/env bash
# What the test suite needs beyond Python packages: a Redis answering on 127.0.0.1:6379.
set -euo pipefail
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "test-setup: starting redis-server on 127.0.0.1:6379"
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi

# The browser test (tests/test_browser.py) drives Debian's chromium through Playwright;
# Playwright's own browser download cannot be used, so the distribution's package is installed.
if [ ! -x /usr/bin/chromium ]; then
  echo "test-setup: installing Debian's chromium for the browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
