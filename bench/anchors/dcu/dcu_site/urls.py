from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from . import views

urlpatterns = [
    path("healthz", lambda request: HttpResponse("ok")),
    path("api/chunked_upload/", csrf_exempt(views.Upload.as_view())),
    path("api/chunked_upload_complete/", csrf_exempt(views.Complete.as_view())),
]
