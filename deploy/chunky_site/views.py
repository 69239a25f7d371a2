import os

from django.http import JsonResponse

from chunky_redis.conf import conf
from chunky_redis.runtime import get_redis


def health(request):
    """200 when Redis answers and the upload directory is writable, else 503 with what failed."""
    problems = {}
    try:
        get_redis().ping()
    except Exception as e:  # any failure to reach Redis is a health failure
        problems["redis"] = str(e)
    directory = conf.UPLOAD_DIR
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK):
            problems["upload_dir"] = f"{directory} is not writable"
    except OSError as e:
        problems["upload_dir"] = str(e)
    status = 503 if problems else 200
    return JsonResponse(
        {"status": "ok" if not problems else "unhealthy", "problems": problems}, status=status
    )
