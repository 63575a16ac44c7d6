from django.urls import path

from djangoproject import views

urlpatterns = [
    path("cached/", views.cached_view),
    path("cached/<str:name>/", views.cached_view),
    path("plain/", views.plain_view),
    path("file-cached/<str:name>/", views.file_cached_view),
    path("recorded/", views.recorded_view),
    path("recorded/<str:name>/", views.recorded_view),
    path("unrecorded/<str:name>/", views.unrecorded_view),
    path("articles/<int:pk>/", views.article_view),
    path("template/", views.template_view),
]
