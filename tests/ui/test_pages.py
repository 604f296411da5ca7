"""The pages in a real headless Chromium against real servers: a click on the storefront
visibly changes the recommendations, a new visitor's features give feature-based ones, and
the operations view shows what serves and rolls it back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from srv_helpers import API_KEY, Server, make_bundle, start_server, stop_server

from recsys.serving import registry as reg


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("store")
    bundle = make_bundle(str(root / "b1"), "v1", seed=1, n_users=80, n_items=60, edges_per_user=6)
    srv = start_server(root, "--bundle", bundle)
    yield srv
    stop_server(srv)


def shown(page: Page, testid: str = "rec-card") -> list[str]:
    return page.locator(f"[data-testid={testid}]").evaluate_all(
        "cards => cards.map(c => c.dataset.item)"
    )


def answer(srv: Server, user: str, **params: str) -> dict:
    r = httpx.get(f"{srv.url}/v1/recommendations/{user}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    out: dict = r.json()
    return out


def test_buy_on_the_first_card_changes_the_list(
    store: Server, page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    page.goto(f"{store.url}/ui/?user=u3")
    expect(page.locator("[data-testid=rec-card]").first).to_be_visible()
    expect(page.locator("#exclude-seen")).to_be_checked()
    before = shown(page)
    want = answer(store, "u3", k="10", exclude_seen="all")
    assert before == [it["item_id"] for it in want["items"]]  # the page shows the real answer
    assert page.locator("[data-testid=rec-card] .because").all_inner_texts() == [
        it["because"]["reason"] for it in want["items"]
    ]
    expect(page.locator("#rec-source")).to_have_text("history")
    bought = before[0]
    buy = page.locator(f"[data-testid=rec-card][data-item='{bought}'] button[data-action=purchase]")

    buy.click()  # no key yet: refused in the page, nothing sent
    expect(page.locator("#message")).to_contain_text("API key")
    assert shown(page) == before
    assert httpx.get(f"{store.url}/v1/users/u3/history").json()["live"] == []

    page.fill("#api-key", API_KEY)
    page.click("#api-key-save")
    expect(page.locator("#api-key-state")).to_have_text("key set for this tab")
    buy.click()
    expect(page.locator("#change")).to_be_visible()
    after = shown(page)
    assert bought not in after and after != before
    assert bought in shown(page, "left-card")
    entered = page.locator(".card.entered").evaluate_all("cs => cs.map(c => c.dataset.item)")
    assert entered and set(entered) == set(after) - set(before)
    expect(page.locator("#change")).to_contain_text(f"bought {bought}")
    expect(page.locator("#history-live li").first).to_contain_text(bought)
    # the list is the next real GET's answer, and the event reached the live store
    assert after == [it["item_id"] for it in answer(store, "u3", k="10")["items"]]
    live = httpx.get(f"{store.url}/v1/users/u3/history").json()["live"]
    assert [(e["item_id"], e["event_type"]) for e in live] == [(bought, "purchase")]
    assert page.evaluate("() => document.documentElement.outerHTML").count(API_KEY) == 0
    screenshot(page, "storefront-after-buy.png")


def test_a_new_visitor_gets_feature_based_recommendations(
    store: Server, page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    page.goto(f"{store.url}/ui/?visitor=1")
    expect(page.locator("#visitor-form")).to_be_visible()
    page.select_option("#f-country", "FR")
    page.fill("#f-age", "30")
    page.click("#visitor-load")
    expect(page.locator("#rec-source")).to_have_text("features")
    visitor = page.locator("#visitor-id").inner_text()
    assert visitor.startswith("visitor-")
    got = shown(page)
    want = answer(store, visitor, k="10", exclude_seen="all", **{"f.country": "FR", "f.age": "30"})
    assert want["source"] == "features" and got == [it["item_id"] for it in want["items"]]
    popular = answer(store, visitor, k="10")
    assert popular["source"] == "global_popularity"
    assert got != [it["item_id"] for it in popular["items"]]
    assert set(page.locator("[data-testid=rec-card] .because").all_inner_texts()) == {
        "because it matches your profile"
    }
    screenshot(page, "storefront-new-visitor.png")
    # a click folds into the visitor's next answer: history and features together
    page.fill("#api-key", API_KEY)
    page.click("#api-key-save")
    page.locator("[data-testid=rec-card]").first.locator("button[data-action=view]").click()
    expect(page.locator("#rec-source")).to_have_text("history+features")


def test_ops_view_shows_the_model_and_rolls_back(
    tmp_path: Path, page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    registry = str(tmp_path / "registry")
    for v, seed in (("v1", 1), ("v2", 2)):
        reg.publish(registry, make_bundle(str(tmp_path / v), v, seed=seed))
    srv = start_server(tmp_path, "--registry", registry)
    try:
        for user in ("u1", "u2", "stranger"):
            answer(srv, user, k="5")
        model = httpx.get(f"{srv.url}/v1/model").json()
        assert model["active"]["version"] == "v2"
        page.goto(f"{srv.url}/ui/ops")
        expect(page.locator("#active-version")).to_have_text(model["active"]["version"])
        expect(page.locator("#previous-version")).to_have_text("v1")
        health = httpx.get(f"{srv.url}/v1/ops/health").json()
        assert health["answers"] == 3
        expect(page.locator("[data-metric=coverage] .tile-value")).to_have_text(
            f"{100 * health['catalog_coverage']:.1f}%"
        )
        expect(page.locator("#lineage [data-step=bundle]")).to_contain_text("verified")
        screenshot(page, "ops-before-rollback.png")

        page.click("#rollback")  # no key: refused in the page
        expect(page.locator("#message")).to_contain_text("API key")
        page.fill("#api-key", API_KEY)
        page.click("#api-key-save")
        page.click("#rollback")
        expect(page.locator("#message")).to_contain_text("now serving v1")
        expect(page.locator("#active-version")).to_have_text("v1")
        assert httpx.get(f"{srv.url}/v1/model").json()["active"]["version"] == "v1"
        pointer = json.loads(Path(registry, "production.json").read_text())
        assert pointer["current"]["version"] == "v1"
        expect(page.locator("#rollback")).to_be_disabled()  # nothing older left
        screenshot(page, "ops-after-rollback.png")
    finally:
        stop_server(srv)
