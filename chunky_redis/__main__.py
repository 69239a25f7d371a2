"""``python -m chunky_redis``: the upload client's command line (no Django needed)."""

import sys

from chunky_redis.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
