"""Paging through a region's entries: the one loop over list_entries'
cursor, for the command, the pages-by-URL code and keys by pattern."""


def entry_pages(cache, glob="", include_expired=False, size=1000, keys_only=False):
    """Yields the region's matching entries a page (a list of dicts, or of
    full keys with keys_only) at a time, never the whole region at once.
    The next page is asked for only when the caller comes back for it, so a
    caller may delete the entries of a page before then (the store's cursor
    allows it)."""
    cursor = ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, glob=glob, limit=size,
                                          include_expired=include_expired,
                                          keys_only=keys_only)
        yield page
        if not cursor:
            return
