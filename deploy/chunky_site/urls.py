import re

from django.conf import settings
from django.urls import include, path, re_path

from . import demo, views

# Errors outside the upload views (an unknown path, a failing middleware) are JSON too.
handler400 = "chunky_site.views.bad_request"
handler403 = "chunky_site.views.permission_denied"
handler404 = "chunky_site.views.page_not_found"
handler500 = "chunky_site.views.server_error"

# The upload endpoints come first: Django tries the patterns in order on every request, and
# chunk requests are nearly all of them. No two of these patterns match the same path.
urlpatterns = [
    path("", include("chunky_redis.urls")),  # the chunky dialect: upload/...
    path("files/", include("chunky_redis.urls_tus")),  # tus 1.0
    path("resumable/", include("chunky_redis.urls_rufh")),  # the IETF resumable-upload draft
    path("chunked/", include("chunky_redis.chunked_upload_urls")),
    path("", demo.index, name="demo"),
    path("demo/chunked-upload/", demo.chunked_upload_page, name="demo-chunked-upload"),
    path("demo/uppy/", demo.uppy_page, name="demo-uppy"),
    path("healthz", views.health, name="health"),
    # /metrics: 404 unless CHUNKY_METRICS=1 (then behind CHUNKY_METRICS_TOKEN, if set).
    path("", include("chunky_redis.urls_metrics")),
]

# The finished files, so that an upload's final_url works without a front server (which,
# when there is one, serves them itself: deploy/nginx/chunky_redis.conf).
# Only a local path of its own: not a URL elsewhere, and not "/" (what Django makes of an unset
# MEDIA_URL), which would take every URL of the site.
media_url = settings.MEDIA_URL
if (
    getattr(settings, "CHUNKY_SERVE_MEDIA", True)
    and media_url.startswith("/")
    and not media_url.startswith("//")
    and media_url.strip("/")
):
    prefix = re.escape(media_url.lstrip("/"))
    urlpatterns.append(re_path(rf"^{prefix}(?P<path>.+)$", views.media, name="media"))
