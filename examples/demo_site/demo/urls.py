from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index),
    path("users/<int:user_id>/", views.user_page),
    path("stats/", views.stats),
]
