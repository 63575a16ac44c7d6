"""A model of the test project, for a post_save that purges its page by URL
(tests/test_pages_by_url.py creates its table; there are no migrations)."""

from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "djangoproject"
