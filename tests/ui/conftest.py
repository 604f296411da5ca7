"""Browser fixtures: Debian's headless Chromium driven by Playwright (never a downloaded
browser: ``executable_path``), a fresh browser context per test, real servers from the
serving tests' helpers, and screenshots kept as test artifacts (the test's ``tmp_path``
and ``runs/ui-artifacts/``)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "runs" / "ui-artifacts"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup.sh` as root (it installs "
                    "Debian's chromium); the browser tests never download one")
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
    yield b
    b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in its own context (its own sessionStorage); any uncaught script error fails
    the test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    p = ctx.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    ctx.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Page, str], Path]:
    def take(p: Page, name: str) -> Path:
        out = tmp_path / name
        p.screenshot(path=str(out), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, ARTIFACTS / name)
        return out

    return take
