"""The README's pictures of the pages, taken from a running server (``make demo`` leaves one):

    .venv/bin/python tests/ui/screenshots.py --url http://127.0.0.1:8000 --user u001940 \\
        --key "$RECSYS_API_KEY" --out docs/img

Storefront: the shopper's list, then the list after "buy" on the first card (what left and
what entered highlighted). Operations view: the serving version, its lineage and health.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import launch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--user", required=True)
    ap.add_argument("--key", required=True, help="the server's API key (for the click)")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": a.width, "height": 900})
        page.goto(f"{a.url}/ui/?user={a.user}")
        first = page.locator("[data-testid=rec-card]").first
        expect(first).to_be_visible()
        page.fill("#api-key", a.key)
        page.click("#api-key-save")
        first.locator("button[data-action=purchase]").click()
        expect(page.locator("#change")).to_be_visible()
        page.screenshot(path=str(a.out / "storefront.png"), full_page=True)
        page.goto(f"{a.url}/ui/ops")
        expect(page.locator("body[data-ready='1']")).to_be_attached()
        page.screenshot(path=str(a.out / "ops.png"), full_page=True)
        browser.close()
    print(f"wrote {a.out / 'storefront.png'} and {a.out / 'ops.png'}")


if __name__ == "__main__":
    main()
