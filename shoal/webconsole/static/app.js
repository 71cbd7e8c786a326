// The console: asks for a key when the server has keys, then refreshes its state and load history every
// 2 s (paused while the tab is hidden) and draws the view the user is on.
import { api, key } from "./api.js";
import { h, clear, $ } from "./dom.js";
import { renderOverview, renderCopyPanel } from "./overview.js";
import { LoadView } from "./load.js";
import { ScalingView } from "./scaling.js";
import { BenchView } from "./bench.js";
import * as actions from "./actions.js";

const KEEP_S = 15 * 60;
const store = { session: null, state: null, samples: [], lastT: 0, interval: 2000, watchedNote: null };
const ui = {
  view: "overview", selected: null, selectedCopy: null, admin: false, copyLog: null,
  openCopy: (id) => { ui.selectedCopy = id; ui.copyLog = null; drawPanel(); if (id) fetchLog(); draw(); },
  scale: (comp) => actions.scale(comp, refreshSoon),
  autoscale: (comp) => actions.autoscale(comp, refreshSoon),
  removePolicy: (comp) => actions.removePolicy(comp, refreshSoon),
  deleteComponent: (comp) => actions.deleteComponent(comp, refreshSoon),
  deleteEndpoint: (ep, comps) => actions.deleteEndpoint(ep, comps, refreshSoon),
};
const views = {};
let timer = null;
let ready = false;

function banner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

function showOnly(id) {
  for (const el of document.querySelectorAll("main > section")) el.hidden = el.id !== id;
}

function route() {
  const wanted = (location.hash || "#overview").slice(1);
  ui.view = ["overview", "load", "scaling", "bench"].includes(wanted) ? wanted : "overview";
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === ui.view);
  if (store.session && store.session.scope === "admin") {
    showOnly(`view-${ui.view}`);
    if (ui.view === "bench") views.bench.show();
    draw();
  }
}

function pick(name) {
  ui.selected = name;
  draw();
}

function draw() {
  if (!store.state || !store.session || store.session.scope !== "admin") return;
  const names = store.state.components.filter((c) => !c.base).map((c) => c.name);
  if (!names.includes(ui.selected)) ui.selected = names[0] || null;
  if (ui.view === "overview") renderOverview($("#view-overview"), store, ui);
  else if (ui.view === "load") views.load.render(store, ui, pick);
  else if (ui.view === "scaling") views.scaling.render(store, ui, pick);
  if (ui.selectedCopy) drawPanel();
}

function drawPanel() {
  const panel = $("#copy-panel");
  panel.hidden = !ui.selectedCopy;
  if (ui.selectedCopy && store.state) renderCopyPanel(panel, store, ui, ui.copyLog);
}

async function fetchLog() {
  const id = ui.selectedCopy;
  if (!id) return;
  try {
    const log = await api.copyLog(id);
    if (ui.selectedCopy === id) { ui.copyLog = log; drawPanel(); }
  } catch (exc) {
    if (ui.selectedCopy === id) { ui.copyLog = { path: "", lines: [`(${exc.message})`] }; drawPanel(); }
  }
}

async function refresh() {
  const [state, history] = await Promise.all([api.state(), api.history(store.lastT)]);
  store.state = state;
  store.interval = (state.interval_s || 2) * 1000;
  if (history.samples.length) {
    store.samples.push(...history.samples);
    store.lastT = store.samples[store.samples.length - 1].t;
    const oldest = store.lastT - KEEP_S;
    while (store.samples.length && store.samples[0].t < oldest) store.samples.shift();
  }
  store.watchedNote = history.watched ? null
    : "Engine figures (tokens/s, prefix cache, engine queue) start with the next sample: the server reads them only while a console is open.";
  draw();
  if (ui.selectedCopy) fetchLog();
}

let running = false;
let again = false;

async function loop() {
  clearTimeout(timer);
  if (document.hidden) return;  // nothing to draw: no requests either; resumes when the tab shows again
  if (running) { again = true; return; }  // one refresh at a time: the next follows this one
  running = true;
  try {
    await refresh();
    banner(null);
    if (!ready) {
      ready = true;
      performance.mark("console-ready");
      document.body.dataset.ready = "1";
    }
  } catch (exc) {
    if (exc.status === 401 || exc.status === 403) { running = false; return start(); }
    banner(`Cannot reach the server (${exc.message}); trying again.`);
  }
  running = false;
  if (again) { again = false; return loop(); }
  timer = setTimeout(loop, store.interval);
}

function refreshSoon() {
  setTimeout(loop, 150);
}

function whoami() {
  const s = store.session;
  const el = $("#whoami");
  if (!s) return clear(el);
  clear(el, s.keys ? `key ${s.key} (${s.scope})` : "no API keys: open on loopback",
    s.keys ? h("button", { onclick: () => { key.forget(); location.reload(); } }, "Forget key") : null);
}

async function showLimited() {
  const el = $("#limited");
  showOnly("limited");
  clear(el, h("h2", {}, `Key ${store.session.key}: scope invoke`),
    h("p", {}, "This key may send requests to the inference routes (SageMaker runtime, OpenAI, TGI). Seeing where the copies " +
      "run, their load and their scaling, and changing them, needs an admin key."),
    h("p", { class: "muted" }, "loading the models it can call…"));
  try {
    const models = await api.models();
    el.lastChild.replaceWith(h("div", {}, h("h3", {}, "Models this key can call"),
      h("ul", { dataset: { models: "" } }, models.data.map((m) => h("li", {}, h("code", {}, m.id), m.owned_by ? ` (${m.owned_by})` : "")))));
  } catch (exc) {
    el.lastChild.replaceWith(h("p", { class: "error" }, exc.message));
  }
  document.body.dataset.ready = "1";
}

async function start() {
  clearTimeout(timer);
  try {
    store.session = await api.session();
  } catch (exc) {
    store.session = null;
    whoami();
    $("#tabs").hidden = true;
    $("#deploy-open").hidden = true;
    showOnly("login");
    const error = $("#login-error");
    error.hidden = !(key.get() && (exc.status === 401 || exc.status === 403));
    error.textContent = exc.message;
    if (exc.status !== 401 && exc.status !== 403) banner(`Cannot reach the server (${exc.message}).`);
    document.body.dataset.ready = "login";
    $("#key-input").focus();
    return;
  }
  whoami();
  ui.admin = store.session.scope === "admin";
  $("#tabs").hidden = !ui.admin;
  $("#deploy-open").hidden = !ui.admin;
  if (!ui.admin) return showLimited();
  route();
  loop();
}

function init() {
  views.load = new LoadView($("#view-load"));
  views.scaling = new ScalingView($("#view-scaling"));
  views.bench = new BenchView($("#view-bench"));
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden && ready) loop(); });
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const secret = $("#key-input").value.trim();
    if (secret) key.set(secret);
    $("#key-input").value = "";
    start();
  });
  $("#deploy-open").addEventListener("click", () => store.state && actions.deploy(store.state, refreshSoon));
  window.shoalConsole = { store, ui };  // for the tests and for curious users in the devtools
  start();
}

init();
