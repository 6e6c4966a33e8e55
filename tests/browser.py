"""Open a generated HTML report in Debian's headless Chromium and record what went wrong.

We drive the system browser (/usr/bin/chromium, apt package `chromium`, installed by
`scripts/install.sh test` when it can) through Playwright's `executable_path`; Playwright's
own browser downloads are never used. Tests that need it take the `requires_chromium` marker,
or call `chromium_available()` and skip with the reason it returns.

    check = open_report(report_html, tmp_path / "report.png")
    assert not check.console_errors and not check.page_errors and not check.broken_images
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# The machines running these tests have no outside network: without the last four flags
# Chromium keeps trying to reach Google's update, sync and field-trial services.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 30_000  # launch, navigation and every other browser call
VIEWPORT_HEIGHT = 800  # the screenshot is full-page, so this only sets the first layout
SRC_CHARS = 120  # image sources and request URLs are cut to this (data: URIs are long)

_IMAGES_JS = """() => Array.from(document.images, (img) => ({
    src: img.currentSrc || img.src || img.getAttribute("src") || "",
    complete: img.complete,
    naturalWidth: img.naturalWidth,
}))"""


@dataclass(frozen=True)
class ImageState:
    """One `<img>` after the page's load event."""

    src: str  # resolved URL, cut to SRC_CHARS
    complete: bool
    natural_width: int

    @property
    def loaded(self) -> bool:
        return self.complete and self.natural_width > 0


@dataclass(frozen=True)
class PageCheck:
    """What a page did while it loaded, and what it shows."""

    title: str
    console_errors: list[str]  # console messages of type "error", with where they came from
    page_errors: list[str]  # uncaught exceptions and unhandled rejections
    failed_requests: list[str]  # "URL (net::ERR_...)"
    images: list[ImageState]
    text: str  # document.body.innerText: the visible text

    @property
    def broken_images(self) -> list[ImageState]:
        return [image for image in self.images if not image.loaded]


def chromium_available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing (apt-get install chromium, or scripts/install.sh test)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"playwright does not import ({exc}); pip install -e '.[test]'"
    return None


_SKIP_REASON = chromium_available()
requires_chromium = pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or "")


def _cut(text: str) -> str:
    return text if len(text) <= SRC_CHARS else text[: SRC_CHARS - 3] + "..."


def _console_line(message: Any) -> str:
    """'text (url:line:column)', 1-based; a failed resource load names the resource's URL."""
    where = message.location or {}
    url = _cut(where.get("url") or "")
    line, column = where.get("lineNumber", 0), where.get("columnNumber", 0)
    if line or column:
        url = f"{url}:{line + 1}:{column + 1}"
    return f"{message.text} ({url})" if url else str(message.text)


def open_report(html: Path, screenshot: Path, width: int = 1280) -> PageCheck:
    """Load `html` from file://, wait for its load event, screenshot the full page.

    Raises playwright's Error when the browser does not start or the page does not load
    within TIMEOUT_MS; the browser and Playwright's driver are shut down either way.
    """
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    page_errors: list[str] = []
    failed_requests: list[str] = []
    with (
        sync_playwright() as pw,
        pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=TIMEOUT_MS,
        ) as browser,
        browser.new_context(viewport={"width": width, "height": VIEWPORT_HEIGHT}) as context,
    ):
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on(
            "console",
            lambda m: console_errors.append(_console_line(m)) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: page_errors.append(f"{e.name}: {e.message}"))
        page.on(
            "requestfailed",
            lambda r: failed_requests.append(f"{_cut(r.url)} ({r.failure})"),
        )
        page.goto(html.resolve().as_uri(), wait_until="load")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)
        images = [
            ImageState(_cut(i["src"]), bool(i["complete"]), int(i["naturalWidth"]))
            for i in page.evaluate(_IMAGES_JS)
        ]
        title = page.title()
        text = page.evaluate("() => document.body ? document.body.innerText : ''")
    return PageCheck(
        title=title,
        console_errors=console_errors,
        page_errors=page_errors,
        failed_requests=failed_requests,
        images=images,
        text=text,
    )
