from django.urls import include, path

from tests.support.views import HookedView

urlpatterns = [
    path("hooked/upload/", HookedView.as_view()),
    path("hooked/upload/<str:upload_id>/", HookedView.as_view()),
    path("", include("chunky_redis.urls_metrics")),
    path("", include("chunky_redis.urls")),
]
