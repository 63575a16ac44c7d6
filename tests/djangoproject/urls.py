from django.urls import path

from djangoproject import views

urlpatterns = [
    path("cached/", views.cached_view),
    path("cached/<str:name>/", views.cached_view),
    path("plain/", views.plain_view),
    path("file-cached/<str:name>/", views.file_cached_view),
]
