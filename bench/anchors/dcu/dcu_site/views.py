"""The library's two views; anonymous uploads are allowed so the client needs no login (as for the others)."""

from chunked_upload.views import ChunkedUploadCompleteView, ChunkedUploadView


class Upload(ChunkedUploadView):
    def check_permissions(self, request):
        pass


class Complete(ChunkedUploadCompleteView):
    def check_permissions(self, request):
        pass

    def get_response_data(self, chunked_upload, request):
        return {"upload_id": chunked_upload.upload_id, "status": "complete"}
