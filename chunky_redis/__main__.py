"""``python -m chunky_redis``: the upload client's command line (no Django needed)."""

import sys

from chunky_redis.extras import EXTRAS, missing_message

try:
    from chunky_redis.client.cli import main
except ImportError as e:  # installed without the client extra
    if e.name not in EXTRAS:
        raise
    sys.exit("chunky_redis: " + missing_message(e.name, "the upload client"))

if __name__ == "__main__":
    sys.exit(main())
