"""The tus 1.0 endpoint: ``path("files/", include("chunky_redis.urls_tus"))`` mounts it at files/.

The collection is the mount point itself; an upload's URL is the mount point plus its id
(with or without a trailing slash). Anything else below it is a JSON 404.
"""

from django.urls import path, re_path

from .protocols.tus import TusUploadView, not_found

app_name = "chunky_redis_tus"

urlpatterns = [
    path("", TusUploadView.as_view(), name="tus"),
    path("<str:upload_id>", TusUploadView.as_view(), name="tus-upload"),
    path("<str:upload_id>/", TusUploadView.as_view()),
    re_path(r"^.+$", not_found),
]
