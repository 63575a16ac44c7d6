from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index),
    path("users/<int:user_id>/", views.user_page),
    path("files/<str:name>", views.imported_file),
    path("stats/", views.stats),
]
