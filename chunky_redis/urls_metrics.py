"""``path("", include("chunky_redis.urls_metrics"))`` serves the metrics at ``metrics`` (and
``metrics/``) below where it is included. Protect it: docs/howto/metrics.md says how."""

from django.urls import re_path

from .metrics_view import metrics

urlpatterns = [re_path(r"^metrics/?$", metrics, name="chunky_redis_metrics")]
