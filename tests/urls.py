from django.urls import include, path

urlpatterns = [path("", include("chunky_redis.urls"))]
