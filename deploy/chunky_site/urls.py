from django.urls import include, path

from . import demo, views

urlpatterns = [
    path("", demo.index, name="demo"),
    path("healthz", views.health, name="health"),
    path("", include("chunky_redis.urls")),
]
