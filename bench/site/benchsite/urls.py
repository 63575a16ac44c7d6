from django.urls import path
from django.views.decorators.cache import cache_page

from benchsite import views
from django.conf import settings

urlpatterns = [
    path("article/<int:n>/", cache_page(settings.PAGE_TIMEOUT, cache="pages")(views.article)),
    path("prime/", views.article, {"n": 0, "count": False}),
]
