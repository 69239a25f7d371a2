from chunky_redis.exceptions import ChunkyError, PermissionDenied
from chunky_redis.views import ChunkedUploadView


class HookedView(ChunkedUploadView):
    """Exercises every extension hook of the view."""

    fail_if_no_header = True

    def check_permissions(self, request):
        super().check_permissions(request)
        if request.headers.get("X-Deny"):
            raise PermissionDenied("Denied by the host app.")

    def validate(self, request):
        if request.GET.get("reject"):
            raise ChunkyError("Rejected by validate().", code="rejected")

    def get_max_bytes(self, request):
        return 100

    def get_extra_attrs(self, request):
        return {"project": request.GET.get("project", "")}

    def get_response_data(self, upload, request):
        return {"custom": True, "id": upload.upload_id, "project": upload.extra.get("project")}
