// Shared by the storefront and the operations view: the API key (typed once, kept in this
// tab's sessionStorage, never in the HTML), JSON calls to the API, small DOM helpers.
"use strict";

const KEY_STORE = "recsys.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

// GET or POST a JSON endpoint of this server; a non-2xx answer throws ApiError with its detail.
export async function api(path, { method = "GET", body = undefined, write = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (write) {
    const key = apiKey();
    if (!key) throw new ApiError(401, "enter the API key first (top right)");
    headers["X-API-Key"] = key;
  }
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) {
    let detail = data && data.detail !== undefined ? data.detail : res.statusText;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(res.status, detail);
  }
  return data;
}

// el("div", {class: "x", dataset: {item: "p1"}}, "text", child) -- text is never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function fmtPrice(p) {
  return p === null || p === undefined ? "—" : `€${Number(p).toFixed(2)}`;
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.abs(seconds);
  const sign = seconds < 0 ? "in " : "";
  const tail = seconds < 0 ? "" : " ago";
  if (s < 90) return `${sign}${Math.round(s)} s${tail}`;
  if (s < 5400) return `${sign}${Math.round(s / 60)} min${tail}`;
  if (s < 172800) return `${sign}${(s / 3600).toFixed(1)} h${tail}`;
  return `${sign}${(s / 86400).toFixed(1)} days${tail}`;
}

export function short(hash) {
  return hash ? hash.slice(0, 12) : "—";
}

const PAGES = [["storefront", "/ui/", "Storefront"], ["ops", "/ui/ops", "Operations"]];

// The header both pages share: title, navigation, anything ``extra``, the API-key box.
export function header(page, title, keyHint, extra = []) {
  const top = document.querySelector("header.top");
  top.replaceChildren(
    el("h1", {}, "recsys ", el("span", { class: "sub" }, title)),
    el("nav", {},
      ...PAGES.map(([id, href, name]) => el("a",
        { href, "aria-current": id === page ? "page" : null }, name)),
      el("a", { href: "/docs" }, "API"), el("a", { href: "/metrics" }, "/metrics")),
    ...extra,
    el("div", { class: "keybox" },
      el("input", { id: "api-key", type: "password", placeholder: keyHint,
                    autocomplete: "off", "aria-label": "API key" }),
      el("button", { id: "api-key-save", type: "button" }, "Use key"),
      el("button", { id: "api-key-forget", type: "button", class: "link", hidden: true },
        "forget"),
      el("span", { id: "api-key-state", class: "key-state" })));
  setupKeyBox(top);
}

// The API-key box in the header: type it once; the page keeps it for this tab only.
function setupKeyBox(root, onChange = () => {}) {
  const input = root.querySelector("#api-key");
  const save = root.querySelector("#api-key-save");
  const forget = root.querySelector("#api-key-forget");
  const state = root.querySelector("#api-key-state");
  const show = () => {
    const has = Boolean(apiKey());
    state.textContent = has ? "key set for this tab" : "no key: views only";
    state.className = has ? "key-state ok" : "key-state";
    forget.hidden = !has;
    input.value = "";
  };
  save.addEventListener("click", () => {
    if (input.value.trim()) sessionStorage.setItem(KEY_STORE, input.value.trim());
    show();
    onChange();
  });
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") save.click(); });
  forget.addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); show(); onChange(); });
  show();
}

export function showMessage(node, text, kind = "info") {
  node.textContent = text;
  node.className = `message ${kind}`;
  node.hidden = !text;
}
