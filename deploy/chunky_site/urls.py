from django.urls import include, path

from . import views

urlpatterns = [
    path("healthz", views.health, name="health"),
    path("", include("chunky_redis.urls")),
]
