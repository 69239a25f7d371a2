"""The IETF resumable-upload dialect's URLs; a host mounts them where it likes:
``path("resumable/", include("chunky_redis.urls_rufh"))`` (the bundled site does)."""

from django.urls import path

from .protocols.rufh import ResumableUploadView

app_name = "chunky_redis_rufh"

urlpatterns = [
    path("", ResumableUploadView.as_view(), name="create"),
    path("<str:upload_id>/", ResumableUploadView.as_view(), name="resource"),
]
