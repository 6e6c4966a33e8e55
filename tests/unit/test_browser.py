"""tests/browser.py sees what a report page does in a real Chromium: errors, images, text."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import psutil
import pytest

import tests.browser
from tests.browser import CHROMIUM, PageCheck, chromium_available, open_report, requires_chromium

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_MAGIC
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def page(body: str, title: str = "report") -> str:
    head = f'<meta charset="utf-8"><title>{title}</title>'
    return f"<!doctype html>\n<html><head>{head}</head>\n<body>{body}</body></html>\n"


def browser_processes() -> list[psutil.Process]:
    """Chromium processes started from this test process (through Playwright's driver)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@requires_chromium
def test_good_page_is_clean_and_screenshotted(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    tall = "".join(f"<p>row {i}</p>" for i in range(60))  # taller than the 800 px viewport
    html.write_text(
        page(
            f'<h1>Scorecard</h1><img alt="chart" src="{data_uri(png(4, 3, (200, 30, 30)))}">'
            "<p>p50 latency: <b>123.45</b> ms</p>"
            '<p style="display:none">hidden 98765</p>'
            f"{tall}<script>console.log('a log line is not an error');</script>",
            title="Scorecard report",
        )
    )
    shot = tmp_path / "shots" / "report.png"

    check = open_report(html, shot, width=900)

    assert isinstance(check, PageCheck)
    assert check.title == "Scorecard report"
    assert check.console_errors == []
    assert check.page_errors == []
    assert check.failed_requests == []
    assert len(check.images) == 1
    assert check.images[0].src.startswith("data:image/png;base64,")
    assert check.images[0].loaded and check.images[0].natural_width == 4
    assert check.broken_images == []
    assert "p50 latency: 123.45 ms" in check.text
    assert "98765" not in check.text  # innerText is the visible text only
    data = shot.read_bytes()
    width, height = png_size(data)
    assert width == 900 and height > 800  # the requested width, and the full page
    assert browser_processes() == []


@requires_chromium
def test_broken_page_reports_every_problem(tmp_path: Path) -> None:
    html = tmp_path / "broken.html"
    html.write_text(
        page(
            '<img id="missing" src="missing.png">'
            '<img id="garbage" src="data:image/png;base64,bm90IGEgcG5nIGF0IGFsbA==">'
            f'<img id="fine" src="{data_uri(png(2, 2, (0, 0, 255)))}">'
            "<p>42 requests</p>"
            "<script>console.error('boom');</script>"
            "<script>Promise.reject(new Error('rejected later'));</script>"
            "<script>throw new TypeError('kaput');</script>"
        )
    )

    check = open_report(html, tmp_path / "broken.png")

    assert any(line.startswith("boom (file://") for line in check.console_errors), (
        check.console_errors
    )
    assert "TypeError: kaput" in check.page_errors, check.page_errors
    assert any("rejected later" in line for line in check.page_errors), check.page_errors
    broken = [image.src for image in check.broken_images]
    assert len(broken) == 2, check.images
    assert broken[0].startswith("file://") and broken[0].endswith("/missing.png")
    assert broken[1] == "data:image/png;base64,bm90IGEgcG5nIGF0IGFsbA=="
    assert len(check.images) == 3 and check.images[2].loaded
    assert any(
        "missing.png" in line and "ERR_FILE_NOT_FOUND" in line for line in check.failed_requests
    ), check.failed_requests
    assert "42 requests" in check.text  # the page still rendered
    assert (tmp_path / "broken.png").read_bytes()[:8] == PNG_MAGIC


@requires_chromium
def test_a_page_that_cannot_load_raises_and_leaves_no_browser(tmp_path: Path) -> None:
    from playwright.sync_api import Error

    with pytest.raises(Error, match="ERR_FILE_NOT_FOUND"):
        open_report(tmp_path / "absent.html", tmp_path / "absent.png")
    assert not (tmp_path / "absent.png").exists()
    assert browser_processes() == [], f"stray {CHROMIUM} processes"


def test_a_missing_browser_is_a_skip_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tests.browser, "CHROMIUM", tmp_path / "no-chromium")
    reason = chromium_available()
    assert reason is not None and "no-chromium is missing" in reason
