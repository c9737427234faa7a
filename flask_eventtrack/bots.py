"""A light User-Agent check for crawlers, spiders and headless browsers.

Light on purpose (the profile API's vendor says the same): a real browser must
never be refused, so the patterns only match what crawlers announce about
themselves: a ``+http`` contact URL, a ``...bot`` / ``spider`` / ``crawler``
product token, or a headless-browser marker. Generic HTTP clients (``curl``,
``python-requests``, ``okhttp``) are *not* bots here: the profile API is called
server-to-server, and those are the integrations' own clients.

CHOICE: a curated list instead of a dependency. ``crawler-user-agents`` and
``crawlerdetect`` on PyPI are larger and well kept, but they also flag generic
HTTP clients, which would refuse legitimate server-side calls; this list is
small enough to read, and ``tests/test_profile_bots.py`` holds it to a list of
real browser User-Agents.
"""

from __future__ import annotations

import re

__all__ = ["BOT_PATTERNS", "is_bot"]

#: Regular expressions (case-insensitive), each with the kind of UA it catches.
BOT_PATTERNS: tuple[str, ...] = (
    # Crawlers put a contact URL in their UA; browsers never do.
    r"\+https?://",
    # Googlebot/2.1, bingbot, AhrefsBot, GPTBot, Slackbot-..., "bot" alone;
    # not the Cubot phone brand ("Android 10; CUBOT X30").
    r"(?<!cu)bot\b",
    # Baiduspider, Bytespider, "Sogou web spider", crawler, crawl, scraper
    r"spider|crawl|scrap(?:er|y)",
    # Headless and scripted browsers (Puppeteer/Playwright send HeadlessChrome)
    r"headless|phantomjs|slimerjs|electron-fetch",
    # Well-known fetchers whose UA has none of the words above
    r"facebookexternalhit|facebookcatalog|mediapartners-google|google-inspectiontool"
    r"|feedfetcher|ia_archiver|yahoo! slurp|bingpreview|chrome-lighthouse|pingdom"
    r"|pagespeed|gtmetrix|screenshot",
)

_BOT_RE = re.compile("|".join(f"(?:{p})" for p in BOT_PATTERNS), re.IGNORECASE)


def is_bot(user_agent: str | None) -> bool:
    """True when ``user_agent`` announces a crawler, spider or headless browser.

    A missing or empty User-Agent is *not* a bot: server-side integrations
    often send none.
    """
    if not user_agent:
        return False
    return _BOT_RE.search(user_agent) is not None
