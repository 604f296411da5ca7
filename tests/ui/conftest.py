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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import launch
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "runs" / "ui-artifacts"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        b = launch(playwright)
    except RuntimeError as exc:
        pytest.fail(str(exc))
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
