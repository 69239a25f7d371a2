#!/usr/bin/env bash
# What the test suite needs beyond Python packages: Redis on 127.0.0.1:6379, RabbitMQ on
# 127.0.0.1:5672 (guest/guest) for the RabbitMQ-broker test, and Debian's chromium.
set -euo pipefail
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
apt_updated=""
# Another apt or dpkg run (unattended-upgrades, a second shell) holds the lock: wait for it,
# up to 10 minutes, instead of failing at once.
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_install() {
  [ -n "$apt_updated" ] || { apt_get update -qq; apt_updated=1; }
  apt_get install -y -qq "$@" >/dev/null
}
if ! port_open 6379; then
  echo "test-setup: starting redis-server on 127.0.0.1:6379"
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
fi

# tests/test_cluster.py and tests/test_sentinel.py start their own redis-server, redis-cli --cluster
# and redis-sentinel processes on free ports (tests/support/redis_servers.py); redis-sentinel is its
# own Debian package.
if ! command -v redis-cli >/dev/null; then
  echo "test-setup: installing redis-tools for redis-cli --cluster"
  apt_install redis-tools
fi
if ! command -v redis-sentinel >/dev/null; then
  echo "test-setup: installing redis-sentinel"
  # Debian starts the packaged service on 26379; the tests use their own Sentinels on free ports.
  apt_install redis-sentinel
fi

if ! port_open 5672; then
  echo "test-setup: starting rabbitmq-server on 127.0.0.1:5672"
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
  for _ in $(seq 120); do port_open 5672 && break; sleep 0.5; done
fi

# The browser test (tests/test_browser.py) drives Debian's chromium through Playwright;
# Playwright's own browser download cannot be used, so the distribution's package is installed.
if [ ! -x /usr/bin/chromium ]; then
  echo "test-setup: installing Debian's chromium for the browser test"
  apt_install chromium
fi

# tests/test_deploy_files.py checks the nginx sample with the real `nginx -t`.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "test-setup: installing nginx-light to validate the nginx sample"
  apt_install nginx-light
fi
