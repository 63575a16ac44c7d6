"""Paging through a region's entries: the one loop over list_entries'
cursor, for the command and the pages-by-URL code."""


def entry_pages(cache, glob="", include_expired=False, size=1000):
    """Yields the region's matching entries a page (a list of dicts) at a
    time, never the whole region at once. The next page is asked for only
    when the caller comes back for it, so a caller may delete the entries of
    a page before then (the store's cursor allows it)."""
    cursor = ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, glob=glob, limit=size,
                                          include_expired=include_expired)
        yield page
        if not cursor:
            return
