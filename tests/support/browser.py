"""A real browser for tests: Debian's Chromium driven by Playwright. Every request that is not to a loopback
address is aborted and recorded, so a page that reaches for another host fails its test instead of reaching
out."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, ConsoleMessage, Route, sync_playwright

from contracts.endpoints import is_loopback_host

CHROMIUM = "/usr/bin/chromium"
# As root, headless, and quiet: no background calls to Google's services, which the network refuses anyway.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
]  # fmt: skip


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


@dataclass
class Browsing:
    """A browser context, and what its pages tried to reach elsewhere or logged as errors."""

    context: BrowserContext
    elsewhere: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None


@contextmanager
def browser(**context_options: Any) -> Iterator[Browsing]:
    """A fresh headless Chromium context (`context_options` as Playwright's `new_context` takes them)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(**context_options)
            browsing = Browsing(context)

            def only_loopback(route: Route) -> None:
                if is_loopback(route.request.url) or route.request.url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    browsing.elsewhere.append(route.request.url)
                    route.abort()

            def record_error(message: ConsoleMessage) -> None:
                if message.type == "error":
                    browsing.console_errors.append(message.text)

            context.route("**/*", only_loopback)
            context.on("console", record_error)
            yield browsing
        finally:
            chromium.close()
