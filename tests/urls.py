from django.urls import include, path

from tests.support.views import HookedView

urlpatterns = [
    path("hooked/upload/", HookedView.as_view()),
    path("hooked/upload/<str:upload_id>/", HookedView.as_view()),
    path("chunked/", include("chunky_redis.chunked_upload_urls")),
    path("files/", include("chunky_redis.urls_tus")),
    path("", include("chunky_redis.urls_metrics")),
    path("resumable/", include("chunky_redis.urls_rufh")),
    path("", include("chunky_redis.urls")),
]
