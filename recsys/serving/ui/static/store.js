// The storefront: pick a shopper (or be a new visitor), see their recommendations with the
// reason for each, click view / add to cart / buy (a real POST /v1/events) and watch the
// next real GET change the list: what entered is highlighted, what left is shown apart.
import {
  api, el, fmtAge, fmtPrice, header, showMessage,
} from "./common.js";

const $ = (sel) => document.querySelector(sel);
const VISITOR_STORE = "recsys.visitorId";
const VERBS = {
  view: "viewed", click: "clicked on", add_to_cart: "added to cart", purchase: "bought",
  rating: "rated",
};

const state = {
  mode: "known",          // "known" | "visitor"
  userId: null,           // whose recommendations are shown
  items: [],              // the current answer's items
  details: new Map(),     // item id -> {category, price}
  catalog: null,
  busy: false,
};

function visitorId() {
  let id = sessionStorage.getItem(VISITOR_STORE);
  if (!id) {
    const rnd = new Uint32Array(2);
    crypto.getRandomValues(rnd);
    id = `visitor-${rnd[0].toString(16)}${rnd[1].toString(16)}`.slice(0, 20);
    sessionStorage.setItem(VISITOR_STORE, id);
  }
  return id;
}

function features() {
  const out = {};
  for (const input of document.querySelectorAll("#visitor-fields [data-feature]")) {
    const v = input.value.trim();
    if (v !== "") out[input.dataset.feature] = v;
  }
  return out;
}

function query() {
  const p = new URLSearchParams();
  p.set("k", $("#k").value);
  p.set("exclude_seen", $("#exclude-seen").checked ? "all" : "none");
  const cat = $("#category").value;
  if (cat) p.set("include_categories", cat);
  if (state.mode === "visitor") {
    for (const [name, v] of Object.entries(features())) p.set(`f.${name}`, v);
  }
  return p;
}

async function ensureDetails(ids) {
  const missing = ids.filter((i) => !state.details.has(i));
  for (let s = 0; s < missing.length; s += 100) {
    const chunk = missing.slice(s, s + 100);
    const got = await api(`/v1/items?ids=${encodeURIComponent(chunk.join(","))}`);
    for (const it of got.items) state.details.set(it.item_id, it);
    for (const u of got.unknown) state.details.set(u, { item_id: u, category: null, price: null });
  }
}

function card(item, rank, { entered = false, left = false, moved = 0 } = {}) {
  const d = state.details.get(item.item_id) || {};
  const because = item.because || {};
  const cls = ["card", entered ? "entered" : "", left ? "gone" : ""].join(" ").trim();
  const tags = [];
  if (entered) tags.push(el("span", { class: "tag new" }, "new"));
  if (left) tags.push(el("span", { class: "tag gone" }, "left"));
  if (!entered && !left && moved) {
    tags.push(el("span", { class: `tag ${moved > 0 ? "up" : "down"}` },
      moved > 0 ? `▲ ${moved}` : `▼ ${-moved}`));
  }
  const contribution = because.contribution === null || because.contribution === undefined
    ? null : `adds ${because.contribution.toFixed(2)} to the score`;
  return el("article", { class: cls, "data-testid": left ? "left-card" : "rec-card",
                         dataset: { item: item.item_id } },
    el("div", { class: "card-head" },
      el("span", { class: "rank" }, left ? "–" : `#${rank}`), ...tags),
    el("h3", { class: "item-id" }, item.item_id),
    el("div", { class: "facts" },
      el("span", { class: "category" }, d.category || "—"),
      el("span", { class: "price" }, fmtPrice(d.price)),
      el("span", { class: "score", title: "model score" },
        item.score === undefined ? "" : `score ${Number(item.score).toFixed(3)}`)),
    el("p", { class: "because", title: contribution }, because.reason || ""),
    left ? null : el("div", { class: "actions" },
      el("button", { type: "button", dataset: { action: "view" } }, "View"),
      el("button", { type: "button", dataset: { action: "add_to_cart" } }, "Add to cart"),
      el("button", { type: "button", class: "buy", dataset: { action: "purchase" } }, "Buy")));
}

function render(answer, previous, action) {
  const cards = $("#cards");
  cards.replaceChildren();
  const prevRank = new Map(previous.map((it, r) => [it.item_id, r]));
  const nowIds = new Set(answer.items.map((it) => it.item_id));
  answer.items.forEach((it, r) => {
    const was = prevRank.get(it.item_id);
    cards.append(card(it, r + 1, {
      entered: action && was === undefined,
      moved: action && was !== undefined ? was - r : 0,
    }));
  });
  const left = action ? previous.filter((it) => !nowIds.has(it.item_id)) : [];
  $("#left-list").replaceChildren(...left.map((it) => card(it, 0, { left: true })));
  $("#left-wrap").hidden = left.length === 0;
  const entered = action ? answer.items.filter((it) => !prevRank.has(it.item_id)) : [];
  const change = $("#change");
  if (action) {
    const parts = [`${VERBS[action.type] || action.type} ${action.item}.`];
    parts.push(left.length || entered.length
      ? `${left.length} left the list, ${entered.length} entered.`
      : "The list did not change.");
    if (action.type === "purchase" && $("#exclude-seen").checked && !nowIds.has(action.item)) {
      parts.push(`${action.item} is out: seen items are excluded.`);
    }
    change.textContent = `You ${parts.join(" ")}`;
    change.hidden = false;
  } else {
    change.hidden = true;
  }
  $("#rec-source").textContent = answer.source;
  $("#live-state").textContent = answer.live_state;
  $("#live-state").className = answer.live_state === "ok" ? "" : "warn";
  $("#model-version").textContent = answer.model_version;
  const note = $("#explanation");
  note.textContent = answer.explanation ? answer.explanation.reason : "";
  note.hidden = !answer.explanation;
  $("#recs-title").textContent = `Recommendations for ${answer.user_id}`;
  if (!answer.items.length) {
    cards.append(el("p", { class: "hint" }, "Nothing to recommend with these filters."));
  }
}

async function loadHistory() {
  const box = $("#history");
  if (!state.userId) return;
  let h;
  try {
    h = await api(`/v1/users/${encodeURIComponent(state.userId)}/history?limit=12`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "hint" }, `history unavailable: ${err.message}`));
    return;
  }
  const now = Date.now() / 1000;
  const live = h.live.map((ev) => el("li", { dataset: { item: ev.item_id }, class: "live" },
    el("b", {}, VERBS[ev.event_type] || ev.event_type), " ", el("code", {}, ev.item_id),
    el("span", { class: "muted" },
      ` ${ev.category || ""} · ${fmtAge(now - Date.parse(ev.ts) / 1000)}`),
    ev.folded ? el("span", { class: "tag folded", title: "folded into the recommendations" },
      "live") : null));
  const past = h.bundle.map((it) => el("li", { dataset: { item: it.item_id } },
    el("code", {}, it.item_id), " ",
    el("span", { class: "muted" }, `${it.category || ""} · ${it.event_types.join(", ")}`)));
  box.replaceChildren(
    el("h3", {}, `This session (${h.live_total})`),
    live.length ? el("ul", { id: "history-live" }, live)
      : el("p", { class: "hint" }, "No live events yet."),
    el("h3", {}, `In the model's snapshot (${h.bundle_total})`),
    past.length ? el("ul", { id: "history-bundle" }, past)
      : el("p", { class: "hint" }, h.known ? "No history." : "Unknown to the model."),
  );
}

async function loadRecs(action = null) {
  if (!state.userId) return;
  const previous = state.items;
  const msg = $("#message");
  try {
    const answer = await api(
      `/v1/recommendations/${encodeURIComponent(state.userId)}?${query()}`);
    await ensureDetails(answer.items.map((it) => it.item_id));
    render(answer, previous, action);
    state.items = answer.items;
    showMessage(msg, "");
  } catch (err) {
    showMessage(msg, err.message, "error");
  }
  await loadHistory();
}

async function act(itemId, type) {
  if (state.busy || !state.userId) return;
  state.busy = true;
  document.body.classList.add("busy");
  try {
    await api("/v1/events", {
      method: "POST", write: true,
      body: { user_id: state.userId, item_id: itemId, event_type: type },
    });
    await loadRecs({ item: itemId, type });
  } catch (err) {
    showMessage($("#message"), err.status === 401 || err.status === 403
      ? `${err.message} (enter the API key at the top right)` : err.message, "error");
  } finally {
    state.busy = false;
    document.body.classList.remove("busy");
  }
}

function choose(mode, userId) {
  state.mode = mode;
  state.userId = userId;
  state.items = [];
  const url = new URL(location.href);
  url.search = "";
  if (mode === "known") url.searchParams.set("user", userId);
  else url.searchParams.set("visitor", "1");
  history.replaceState(null, "", url);
  loadRecs();
}

function setTab(mode) {
  $("#tab-known").setAttribute("aria-selected", String(mode === "known"));
  $("#tab-visitor").setAttribute("aria-selected", String(mode === "visitor"));
  $("#known-form").hidden = mode !== "known";
  $("#visitor-form").hidden = mode !== "visitor";
}

function visitorFields(list) {
  const box = $("#visitor-fields");
  box.replaceChildren();
  if (!list.length) {
    box.append(el("p", { class: "hint" },
      "This model takes no user features: a new visitor gets what is popular."));
  }
  for (const f of list) {
    const id = `f-${f.name}`;
    const input = f.kind === "categorical"
      ? el("select", { id, dataset: { feature: f.name } },
        el("option", { value: "" }, "(not given)"),
        ...f.values.map((v) => el("option", { value: v }, v)))
      : el("input", { id, type: "number", step: "any", placeholder: `e.g. ${f.typical}`,
                      dataset: { feature: f.name } });
    box.append(el("label", {}, f.name.replaceAll("_", " "), input));
  }
}

let searchTimer = null;
function suggest() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const prefix = $("#user-search").value.trim();
    try {
      const got = await api(`/v1/users?prefix=${encodeURIComponent(prefix)}&limit=10`);
      $("#user-suggestions").replaceChildren(
        ...got.users.map((u) => el("option", { value: u })));
    } catch { /* suggestions are a convenience */ }
  }, 150);
}

async function init() {
  header("storefront", "storefront", "API key for clicks",
    [el("span", { class: "badge", id: "model-version", title: "model version serving" }, "…")]);
  $("#visitor-id").textContent = visitorId();
  try {
    state.catalog = await api("/v1/catalog");
  } catch (err) {
    showMessage($("#message"), `no model serving yet: ${err.message}`, "error");
    return;
  }
  $("#model-version").textContent = state.catalog.model_version;
  $("#category").append(...state.catalog.categories.map(
    (c) => el("option", { value: c.name }, `${c.name} (${c.items})`)));
  visitorFields(state.catalog.user_features);

  $("#tab-known").addEventListener("click", () => setTab("known"));
  $("#tab-visitor").addEventListener("click", () => setTab("visitor"));
  $("#user-search").addEventListener("input", suggest);
  $("#known-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("#user-search").value.trim();
    if (id) choose("known", id);
  });
  $("#visitor-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    choose("visitor", visitorId());
  });
  $("#visitor-new").addEventListener("click", () => {
    sessionStorage.removeItem(VISITOR_STORE);
    $("#visitor-id").textContent = visitorId();
    if (state.mode === "visitor") choose("visitor", visitorId());
  });
  for (const sel of ["#category", "#exclude-seen", "#k"]) {
    $(sel).addEventListener("change", () => { state.items = []; loadRecs(); });
  }
  $("#cards").addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    act(btn.closest("[data-item]").dataset.item, btn.dataset.action);
  });

  const params = new URLSearchParams(location.search);
  if (params.get("visitor")) {
    setTab("visitor");
  } else if (params.get("user")) {
    $("#user-search").value = params.get("user");
    choose("known", params.get("user"));
  }
  suggest();
  document.body.dataset.ready = "1";
}

init();
