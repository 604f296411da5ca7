"""How the project starts a browser: Debian's Chromium, headless, driven by Playwright with
``executable_path`` (``playwright install`` is never run: nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Playwright) -> Browser:
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: run `bash scripts/setup.sh` as root (it "
            "installs Debian's chromium); nothing downloads a browser"
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
