// The operations view: which model serves, where it came from (with hashes, dates and the
// HTML reports), the previous version with a rollback button, and the served-recommendation
// health the server computes over its sliding window.
import {
  api, el, fmtAge, header, short, showMessage,
} from "./common.js";

const $ = (sel) => document.querySelector(sel);
const SOURCES = ["history", "features", "segment", "popularity", "store_fallback"];
const STEP_NAMES = {
  bundle: "ONNX bundle", model: "model run", graph: "graph snapshot",
  validation: "validation report",
};

function fact(term, value, title) {
  return [el("dt", {}, term), el("dd", { title }, value ?? "—")];
}

function badge(verified) {
  if (verified === true) return el("span", { class: "tag ok", title: "hash matches what the next step recorded" }, "verified");
  if (verified === false) return el("span", { class: "tag bad", title: "hash differs from what was recorded" }, "MISMATCH");
  return el("span", { class: "tag", title: "nothing recorded to compare with" }, "not checkable");
}

function renderLineage(data) {
  const a = data.active;
  $("#active-version").textContent = a.version;
  $("#active-facts").replaceChildren(
    ...fact("bundle", a.uri),
    ...fact("manifest sha256", short(a.manifest_sha256), a.manifest_sha256),
    ...fact("data up to", a.data_cutoff),
    ...fact("published", a.published_at),
    ...fact("registry", data.registry),
  );
  $("#lineage").replaceChildren(...data.lineage.map((s) => el("li",
    { class: `step ${s.error ? "error" : ""}`, dataset: { step: s.step } },
    el("div", { class: "step-head" }, el("b", {}, STEP_NAMES[s.step] || s.step),
      s.uri ? badge(s.verified) : null),
    s.uri ? el("code", { class: "uri", title: s.uri }, s.uri) : null,
    el("dl", { class: "facts-grid small" },
      ...fact("sha256", short(s.sha256), s.sha256 || ""),
      ...fact("as of", s.as_of),
      ...fact("written", s.written),
      ...(s.detail && s.detail.passed !== undefined
        ? fact("passed", String(s.detail.passed)) : [])),
    el("p", { class: "muted" }, s.error || s.link),
    s.reports.length ? el("p", {}, ...s.reports.map((r) => el("a",
      { href: r.url, target: "_blank", rel: "noopener" }, r.name))) : null)));

  const prev = data.previous;
  $("#previous").replaceChildren(prev
    ? el("dl", { class: "facts-grid" },
      ...fact("version", el("span", { id: "previous-version" }, prev.version)),
      ...fact("bundle", prev.uri),
      ...fact("manifest sha256", short(prev.manifest_sha256), prev.manifest_sha256),
      ...fact("published", prev.published_at),
      ...fact("known to", prev.from))
    : el("p", { class: "hint" }, "No earlier version to roll back to."));
  $("#rollback").disabled = !prev;
  $("#rollback").dataset.target = prev ? prev.version : "";
}

function pct(x) {
  return x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`;
}

function ms(x) {
  return x === null || x === undefined ? "—" : `${(1000 * x).toFixed(2)} ms`;
}

function renderHealth(h) {
  $("#window").textContent = `${Math.round(h.window_s / 60)} min`;
  $("#answers").textContent = `${h.answers} answers, ${h.recommendations} items recommended`;
  const tile = (name, value, hint, id) => el("div", { class: "tile", "data-metric": id, title: hint },
    el("span", { class: "tile-value" }, value), el("span", { class: "tile-name" }, name));
  $("#tiles").replaceChildren(
    tile("catalogue coverage", pct(h.catalog_coverage),
      `${h.items_recommended} of ${h.catalog_items} items recommended at least once`, "coverage"),
    tile("Gini of exposure", h.exposure_gini === null ? "—" : h.exposure_gini.toFixed(3),
      "0: every item recommended equally often; 1: one item takes every slot", "gini"),
    tile("latency p50", ms(h.latency_p50_s), "server side, recommendation requests", "p50"),
    tile("latency p99", ms(h.latency_p99_s), "server side, recommendation requests", "p99"),
    tile("model data age", fmtAge(h.model_data_age_s).replace(" ago", ""),
      "since the bundle's data cutoff (the end of the newest data it learned from)", "model-age"),
    tile("serving for", fmtAge(h.model_serving_age_s).replace(" ago", ""),
      "since this server started serving the bundle", "serving-age"),
    tile("newest live event", fmtAge(h.newest_live_event_age_s),
      "the newest event time this server has seen", "event-age"),
  );
  const bar = $("#sources");
  bar.replaceChildren(...SOURCES.filter((s) => h.source_share[s]).map((s) => el("span",
    { class: `seg src-${s}`, style: undefined, title: `${s}: ${pct(h.source_share[s])}`,
      dataset: { source: s } })));
  for (const seg of bar.children) {
    seg.style.flexGrow = String(h.source_share[seg.dataset.source]);
  }
  $("#source-legend").replaceChildren(...SOURCES.map((s) => el("li", { dataset: { source: s } },
    el("span", { class: `swatch src-${s}` }), `${s.replace("_", " ")} `,
    el("b", {}, pct(h.source_share[s])), el("span", { class: "muted" }, ` (${h.source_answers[s]})`))));
}

async function refresh() {
  try {
    const [lineage, health] = await Promise.all([api("/v1/ops/lineage"), api("/v1/ops/health")]);
    renderLineage(lineage);
    renderHealth(health);
    document.body.dataset.ready = "1";
  } catch (err) {
    showMessage($("#message"), err.message, "error");
  }
}

async function rollback() {
  const target = $("#rollback").dataset.target;
  if (!target) return;
  $("#rollback").disabled = true;
  try {
    const got = await api("/v1/admin/rollback", { method: "POST", write: true });
    showMessage($("#message"), `Rolled back: now serving ${got.model_version}.`, "ok");
  } catch (err) {
    showMessage($("#message"), `Rollback refused: ${err.message}`, "error");
  }
  await refresh();
}

header("ops", "operations", "API key for rollback");
$("#rollback").addEventListener("click", rollback);
refresh();
setInterval(() => { if ($("#auto").checked) refresh(); }, 5000);
