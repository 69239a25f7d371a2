"""The django-chunked-upload 2.x dialect: ``path("chunked/", include("chunky_redis.chunked_upload_urls"))``.

Mount it where the pages written for django-chunked-upload post to: its ``upload/`` and
``complete/`` stand for the two views those pages' URLs named.
"""

from django.urls import path, re_path

from .protocols.chunked_upload import ChunkedUploadCompleteView, ChunkedUploadView, not_found

app_name = "chunked_upload"

urlpatterns = [
    path("upload/", ChunkedUploadView.as_view(), name="upload"),
    path("complete/", ChunkedUploadCompleteView.as_view(), name="complete"),
    # Anything else below them is a JSON 404, never Django's HTML page.
    re_path(r"^(?:upload|complete)/.+$", not_found),
]
