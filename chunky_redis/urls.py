from django.urls import path, re_path

from .protocols.chunky import ChunkedUploadView, not_found

app_name = "chunky_redis"

urlpatterns = [
    path("upload/", ChunkedUploadView.as_view(), name="upload"),
    path("upload/<str:upload_id>/", ChunkedUploadView.as_view(), name="upload-detail"),
    # Anything else below upload/ is a JSON 404, never Django's HTML page.
    re_path(r"^upload(?:/.*)?$", not_found),
]
