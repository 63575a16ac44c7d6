"""The bench site's article n, seeded: its size and its text. Plain Python
(no Django), so bench_site.py sizes the stores from the same numbers."""

import math
import random

# Sizes: log-normal around 16 KB (half the pages within about 11-23 KB, 90 %
# between 8 and 33 KB), then a tail: one page in 20 is 2 to 8 times larger.
MEDIAN = 16 * 1024
SIGMA = 0.45
SMALLEST, LARGEST = 2 * 1024, 512 * 1024

WORDS = (
    "cache region store page worker request response header shared memory file memcached "
    "latency tail zipf hit miss warm cold key value expiry eviction segment index arena "
    "process thread socket server client template render view middleware session cookie "
    "language zone vary etag body length content type encoding gzip charset query path "
    "article author editor review comment reader archive topic section summary detail "
    "north south east west river harbour market station library garden bridge tower "
    "morning evening winter summer autumn spring weather signal measure record table"
).split()


def rng_for(seed, n):
    return random.Random(f"bench-site:{seed}:{n}")


def page_size(seed, n):
    """The size in bytes article n's HTML aims at."""
    rng = rng_for(seed, n)
    size = rng.lognormvariate(math.log(MEDIAN), SIGMA)
    if rng.random() < 0.05:
        size *= rng.uniform(2, 8)
    return int(min(max(size, SMALLEST), LARGEST))


def article(seed, n):
    """Article n's context: a title, paragraphs about page_size(seed, n)
    bytes in all (the template adds about 2 KB around them), related links."""
    target = page_size(seed, n) - 2048
    rng = rng_for(seed, -n - 1)
    title = " ".join(rng.choice(WORDS) for _ in range(6)).capitalize()
    paragraphs, total = [], 0
    while total < target:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120)))
        text = text.capitalize() + "."
        paragraphs.append({"heading": rng.choice(WORDS).capitalize(), "text": text})
        total += len(text) + 40
    related = [{"n": rng.randrange(1, 10_000), "title": " ".join(rng.sample(WORDS, 3))}
               for _ in range(8)]
    return {"n": n, "title": title, "paragraphs": paragraphs, "related": related,
            "tags": rng.sample(WORDS, 5)}
