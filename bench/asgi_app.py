"""The bundled site behind Django's own ASGI handler, for the slow-client comparison.

Django's ASGIHandler reads the whole request body (into a SpooledTemporaryFile, on disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before the view runs, and runs sync views on one thread per process.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site_settings")
application = get_asgi_application()
