from django.urls import path

import regioncache.views

from demo import views

urlpatterns = [
    path("", views.index),
    path("users/<int:user_id>/", views.user_page),
    path("files/<str:name>", views.imported_file),
    path("stats/", views.stats),
    # Prometheus scrapes this with "Authorization: Bearer <REGIONCACHE_METRICS_TOKEN>".
    path("metrics/", regioncache.views.metrics),
]
