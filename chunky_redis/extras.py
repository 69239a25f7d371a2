"""The optional packages, and the extra of pyproject.toml that installs each.

Only Django, redis and Celery are installed with chunky_redis; everything a single
configuration needs is an extra (`chunky_redis[embedded]`). A missing one
must be reported as such, naming the extra, by a system check at start-up, and by a clear
error where it is imported, never as a bare ImportError in the middle of a request.
No Django here: the client uses it too.
"""

from __future__ import annotations

import importlib.util

# module -> extra
EXTRAS = {
    "fakeredis": "embedded",
    "django_redis": "django-redis",
    "requests": "client",
    "tqdm": "client",
    "storages": "s3",
    "boto3": "s3",
    "botocore": "s3",
    "prometheus_client": "metrics",
}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def install_command(module: str) -> str:
    # Not "pip install 'chunky_redis[x]'": until a release is on an index, the extra is added to
    # the checkout or Git URL chunky_redis was installed from.
    return f"install the extra chunky_redis[{EXTRAS[module]}]"


def missing_message(module: str, needed_for: str) -> str:
    """'<module> is not installed; <needed_for> needs it: install the extra chunky_redis[...]'."""
    return f"{module} is not installed; {needed_for} needs it: {install_command(module)}."
