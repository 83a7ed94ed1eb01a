// pyconv train --serve: the live page. Plain JavaScript, no library, no build step: it listens to
// /events (server-sent events: info once, then stats and snapshots) and draws everything on
// canvases from the server's uint8 arrays. Controls are POSTs carrying the run's token.
"use strict";

const TOKEN = document.querySelector('meta[name="pyconv-token"]').content;
const RUN = document.querySelector('meta[name="pyconv-run"]').content;
const $ = (id) => document.getElementById(id);

let info = null;
let stats = null;
let points = [];
let history = [];
let selected = 0;
let hyperEdited = false;

// ------------------------------------------------------------------------ helpers
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "-";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(digits).replace(/\.?0+$/, "");
}

function fmtInput(v) {
  return v === null || v === undefined ? "" : String(Number(v.toPrecision(6)));
}

function bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function showMessage(text, ok) {
  const m = $("msg");
  m.textContent = text;
  m.className = "msg " + (ok ? "ok" : "error");
}

// A canvas of w x h pixels drawn from `get(i)` -> [r, g, b] for pixel i, shown `scale` times larger.
function drawPixels(canvas, w, h, scale, get) {
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = w * scale + "px";
  canvas.style.height = h * scale + "px";
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const d = img.data;
  for (let i = 0; i < w * h; i++) {
    const [r, g, b] = get(i);
    d[4 * i] = r; d[4 * i + 1] = g; d[4 * i + 2] = b; d[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function scaleFor(h, w) {
  return Math.max(1, Math.min(8, Math.floor(48 / Math.max(h, w))));
}

// ------------------------------------------------------------------------ API
async function api(path, body, contentType = "application/json") {
  let reply;
  try {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": contentType, "X-Pyconv-Token": TOKEN },
      body: contentType === "application/json" ? JSON.stringify(body || {}) : body,
    });
    reply = await r.json();
  } catch (e) {
    reply = { ok: false, error: "no answer from the server (stopped?)" };
  }
  if (!reply.ok) showMessage(reply.error || "refused", false);
  return reply;
}

// ------------------------------------------------------------------------ info: the run and its layers
function onInfo(data) {
  if (info && info.id !== data.id) { location.reload(); return; } // another run on this port
  info = data;
  $("run-header").textContent = info.header;
  $("momentum-label").textContent = info.optimizer === "adam" ? "Momentum (Adam's beta1)" : "Momentum";
  $("invert").checked = !!info.invert_default;
  buildLayers();
  buildTests();
}

function layerText(L) {
  const lines = [];
  if (L.filter) {
    lines.push((L.filters ? `${L.filters} filters ` : "") + `${L.filter}, stride ${L.stride}, pad ${L.padding}`);
  }
  lines.push(`parameters: ${L.params.toLocaleString("en")}`);
  return lines;
}

function buildLayers() {
  const root = $("layers");
  root.textContent = "";
  for (const L of info.layers) {
    const box = el("div", "layer " + L.type);
    box.dataset.name = L.name;
    const meta = el("div", "meta");
    meta.appendChild(el("div", "title", `${L.type === "input" ? "input" : L.type} (${L.volume})`));
    if (L.name !== "input") meta.appendChild(el("div", "dim", `layer ${L.name}`));
    for (const line of layerText(L)) meta.appendChild(el("div", "", line));
    const act = el("div", "stat act", "activations: -");
    const grad = el("div", "stat grad", "gradients: -");
    meta.append(act, grad);
    const parts = el("div", "parts");
    for (const [key, what] of [["act", "Activations"], ["grad", "Activation gradients"],
                               ["weights", "Weights"], ["wgrad", "Weight gradients (last training batch)"]]) {
      if ((key === "weights" || key === "wgrad") && L.type !== "Conv2d") continue;
      const part = el("div", "part " + key);
      part.appendChild(el("div", "what", what));
      part.appendChild(el("div", "maps"));
      parts.appendChild(part);
    }
    box.append(meta, parts);
    root.appendChild(box);
  }
}

function buildTests() {
  const root = $("tests");
  root.textContent = "";
  info.sample.forEach((s, i) => {
    const t = el("div", "sample" + (i === selected ? " selected" : ""));
    t.dataset.index = i;
    const c = document.createElement("canvas");
    const [h, w, ch] = s.shape;
    const px = bytes(s.data);
    drawPixels(c, w, h, 64 / Math.max(h, w), (k) => ch === 3 ? [px[3 * k], px[3 * k + 1], px[3 * k + 2]]
                                                             : [px[k], px[k], px[k]]);
    const bars = el("div", "bars");
    bars.appendChild(el("div", "label", `true class: ${info.classes[s.label]}`));
    t.append(c, bars);
    t.addEventListener("click", () => selectImage(i));
    root.appendChild(t);
  });
}

async function selectImage(i) {
  const r = await api("/api/select", { image: i });
  if (r.ok) {
    selected = i;
    document.querySelectorAll(".sample").forEach((t) => t.classList.toggle("selected", +t.dataset.index === i));
  }
}

// ------------------------------------------------------------------------ stats
// Only what changed is written: every write costs the browser a repaint, on the training's machine.
function setText(elem, text) { if (elem.textContent !== text) elem.textContent = text; }
function setProp(elem, name, value) { if (elem[name] !== value) elem[name] = value; }

function onStats(data) {
  if (data.reset) points = [];
  points = points.concat(data.points);
  stats = data.stats;
  if (data.history) history = data.history;
  if (document.hidden) return; // drawn when the tab is shown again
  const s = stats;
  const badge = $("status");
  setText(badge, s.status);
  setProp(badge, "className", "badge " + s.status);
  setText($("status-text"), s.message);
  setText($("progress-text"), s.status === "done" ? `all ${s.epochs} epochs done`
    : `epoch ${s.epoch} of ${s.epochs}, batch ${s.batch} of ${s.batches_per_epoch}`);
  const frac = s.status === "done" ? 1 : ((s.epoch - 1) + s.batch / s.batches_per_epoch) / s.epochs;
  const width = (100 * Math.max(0, Math.min(1, frac))).toFixed(1) + "%";
  if ($("progress-bar").style.width !== width) $("progress-bar").style.width = width;
  setText($("s-fwd"), s.forward_ms_per_example === null ? "-" : fmt(s.forward_ms_per_example, 3) + " ms");
  setText($("s-bwd"), s.backward_ms_per_example === null ? "-" : fmt(s.backward_ms_per_example, 3) + " ms");
  setText($("s-loss"), fmt(s.loss));
  setText($("s-l2"), fmt(s.l2_loss));
  setText($("s-train"), fmt(s.train_accuracy));
  setText($("s-test"), fmt(s.test_accuracy));
  setText($("s-seen"), s.examples_seen.toLocaleString("en"));
  setText($("s-step"), s.step.toLocaleString("en"));
  setText($("s-hyper"), `${fmt(s.lr)} / ${fmt(s.momentum)} / ${fmt(s.weight_decay)}`);
  if (!hyperEdited) {
    for (const k of ["lr", "momentum", "weight_decay"]) setProp($("in-" + k), "value", fmtInput(s[k]));
  }
  const live = ["starting", "running", "paused"].includes(s.status);
  setText($("pause"), s.paused ? "Resume" : "Pause");
  for (const id of ["pause", "apply", "in-lr", "in-momentum", "in-weight_decay"]) setProp($(id), "disabled", !live);
  setProp($("save"), "disabled", !info || !info.out);
  if (s.saved.length) setProp($("save"), "title", `last saved: ${s.saved[s.saved.length - 1].path}`);
  drawEpochs();
  drawGraph();
  drawLayerStats(s.layers);
}

function drawLayerStats(layers) {
  for (const L of layers) {
    const box = document.querySelector(`.layer[data-name="${CSS.escape(L.name)}"]`);
    if (!box) continue;
    const a = L.activation, g = L.gradient;
    setText(box.querySelector(".stat.act"), a ? `max activation ${fmt(a.max)}, min ${fmt(a.min)}` : "activations: -");
    setText(box.querySelector(".stat.grad"), g ? `max gradient ${fmt(g.max)}, min ${fmt(g.min)}` : "gradients: -");
  }
}

// The terminal's table: rows are appended as epochs end (rebuilt only for another history).
function drawEpochs() {
  const body = $("epochs").querySelector("tbody");
  if (body.children.length > history.length) body.textContent = "";
  if (body.children.length === history.length) return;
  for (const h of history.slice(body.children.length)) {
    const tr = document.createElement("tr");
    for (const v of [h.epoch, h.train_loss.toFixed(4), h.train_accuracy.toFixed(4), fmtFixed(h.test_loss),
                     fmtFixed(h.test_accuracy), h.seconds.toFixed(2), Math.round(h.images_per_second).toLocaleString("en")]) {
      tr.appendChild(el("td", "", String(v)));
    }
    body.appendChild(tr);
  }
  const box = $("epochs-box");
  box.scrollTop = box.scrollHeight;
}

function fmtFixed(v) { return v === null || v === undefined ? "-" : v.toFixed(4); }

function drawGraph() {
  const c = $("loss-graph");
  const dpr = window.devicePixelRatio || 1;
  const W = 460, H = 190;
  c.width = W * dpr; c.height = H * dpr;
  const ctx = c.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, W, H);
  const L = 46, R = 8, T = 8, B = 24;
  const tests = history.filter((h) => h.test_loss !== null)
    .map((h) => [h.epoch * info.train_images, h.test_loss]);
  const xs = points.map((p) => p[1]).concat(tests.map((t) => t[0]));
  const ys = points.map((p) => p[2]).concat(tests.map((t) => t[1])).filter((v) => v !== null);
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  if (!xs.length || !ys.length) { ctx.fillText("waiting for the first steps", L + 10, T + 20); return; }
  const xmax = Math.max(...xs, 1), ymax = Math.max(...ys) * 1.05 || 1;
  const X = (x) => L + (W - L - R) * x / xmax, Y = (y) => H - B - (H - T - B) * y / ymax;
  ctx.textAlign = "right";
  for (const f of [0, 0.5, 1]) { ctx.fillText(fmt(ymax * f, 3), L - 4, Y(ymax * f) + 4); }
  ctx.textAlign = "center";
  ctx.fillText("examples seen", (L + W - R) / 2, H - 6);
  ctx.textAlign = "right";
  ctx.fillText(xmax.toLocaleString("en"), W - R, H - 6);
  ctx.strokeStyle = "#1565c0"; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach((p, i) => { if (i) ctx.lineTo(X(p[1]), Y(p[2])); else ctx.moveTo(X(p[1]), Y(p[2])); });
  ctx.stroke();
  ctx.fillStyle = "#ef6c00";
  for (const [x, y] of tests) { ctx.beginPath(); ctx.arc(X(x), Y(y), 3.5, 0, 2 * Math.PI); ctx.fill(); }
}

// ------------------------------------------------------------------------ snapshots
// Snapshots are drawn into the layer boxes on screen only (and not at all in a hidden tab): the
// browser shares the machine with the training. Boxes scrolled to later are drawn then.
let lastSnap = null;
let drawnAll = false;

function onScreen(elem) {
  const r = elem.getBoundingClientRect();
  return r.bottom > -100 && r.top < window.innerHeight + 100;
}

function onSnapshot(snap) {
  lastSnap = snap;
  if (info) drawSnapshot();
}

function drawSnapshot() {
  const snap = lastSnap;
  if (!snap || !info || document.hidden) return;
  selected = snap.image;
  document.querySelectorAll(".sample").forEach((t) => t.classList.toggle("selected", +t.dataset.index === selected));
  $("net-caption").textContent = `(volumes CxHxW, as pyconv summary writes them; test image ${snap.image}, ` +
    `true class ${info.classes[snap.label]}, at step ${snap.step})`;
  for (const S of snap.layers) {
    const box = document.querySelector(`.layer[data-name="${CSS.escape(S.name)}"]`);
    if (!box || box.dataset.step === String(snap.step) + "/" + snap.image || (drawnAll && !onScreen(box))) continue;
    box.dataset.step = String(snap.step) + "/" + snap.image;
    const colour = S.name === "input" && S.act && S.act.shape[0] === 3;
    drawMaps(box.querySelector(".part.act .maps"), S.act, colour);
    drawMaps(box.querySelector(".part.grad .maps"), S.grad, colour);
    if (S.weights) {
      drawFilters(box.querySelector(".part.weights"), S.weights, S, "Weights");
      drawFilters(box.querySelector(".part.wgrad"), S.wgrad, S, "Weight gradients (last training batch)");
    }
  }
  const first = !drawnAll;
  drawnAll = true; // the first snapshot sizes every box; later ones redraw what is on screen
  if (first || onScreen($("tests"))) drawPredictions(snap.predictions);
}

let scrollTimer = null;
window.addEventListener("scroll", () => {
  if (scrollTimer === null) scrollTimer = setTimeout(() => { scrollTimer = null; drawSnapshot(); }, 100);
}, { passive: true });
window.addEventListener("resize", () => drawSnapshot());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && stats) { onStats({ stats, points: [], reset: false, history: null }); drawSnapshot(); }
});

const ROW_PX = 960; // a part's canvas is at most this wide on screen; tiles wrap to more rows

// One canvas of n tiles (tw x th pixels each, `gap` apart), `scale` times larger on screen;
// put(t, x, y, rgb) fills rgb with tile t's pixel (x, y). One canvas per part, not one per map:
// hundreds of small canvases cost the browser far more to composite than one.
function drawTiles(container, n, tw, th, scale, gap, put) {
  let c = container.firstElementChild;
  if (!c) { c = document.createElement("canvas"); container.appendChild(c); }
  const cols = Math.max(1, Math.min(n, Math.floor((ROW_PX / scale + gap) / (tw + gap))));
  const rows = Math.ceil(n / cols);
  const w = cols * (tw + gap) - gap, h = rows * (th + gap) - gap;
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  c.style.width = w * scale + "px";
  c.style.height = h * scale + "px";
  c.dataset.tiles = n;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  const d = img.data, rgb = [0, 0, 0];
  d.fill(255);
  for (let t = 0; t < n; t++) {
    const ox = (t % cols) * (tw + gap), oy = Math.floor(t / cols) * (th + gap);
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        put(t, x, y, rgb);
        const o = 4 * ((oy + y) * w + ox + x);
        d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2];
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

function clearTiles(container) { container.textContent = ""; }

// Activations (C, H, W) as C gray maps (or one colour map), or a vector (F,) as rows of cells.
function drawMaps(container, A, colour) {
  if (!container) return;
  if (!A) { clearTiles(container); return; }
  const px = bytes(A.data);
  if (A.shape.length === 1) {
    const n = A.shape[0];
    const c = drawTiles(container, n, 1, 1, 8, 0, (t, x, y, rgb) => { rgb[0] = rgb[1] = rgb[2] = px[t]; });
    c.title = `${n} values, from ${fmt(A.min)} to ${fmt(A.max)}`;
    return;
  }
  const [C, H, W] = A.shape, s = scaleFor(H, W), hw = H * W;
  if (colour) {
    drawTiles(container, 1, W, H, Math.max(s, 2), 1, (t, x, y, rgb) => {
      const i = y * W + x; rgb[0] = px[i]; rgb[1] = px[hw + i]; rgb[2] = px[2 * hw + i];
    });
    return;
  }
  const c = drawTiles(container, C, W, H, s, 1, (t, x, y, rgb) => { rgb[0] = rgb[1] = rgb[2] = px[t * hw + y * W + x]; });
  c.title = `${C} channels of ${H}x${W}, each pixel scaled over the layer's range`;
}

// Filters (K, Cshown, R, S), each scaled on its own: K blocks, RGB when 3 input channels, else the
// filter's channels side by side (a white column between them).
function drawFilters(part, Wq, S_, what) {
  const container = part.querySelector(".maps");
  if (!Wq) { clearTiles(container); part.querySelector(".what").textContent = what + ": after the first step"; return; }
  const [K, C, R, S] = Wq.shape, px = bytes(Wq.data), rs = R * S;
  const some = C < S_.in_channels ? ` (the first ${C} of ${S_.in_channels} input channels)` : "";
  part.querySelector(".what").textContent =
    `${what}: ${K} filters of ${S_.in_channels}x${R}x${S}${some}, from ${fmt(Wq.min)} to ${fmt(Wq.max)}`;
  const rgb = C === 3, bw = rgb ? S : C * (S + 1) - 1;
  const s = Math.max(1, Math.min(8, Math.floor(24 / Math.max(R, S)), Math.floor(240 / bw)));
  drawTiles(container, K, bw, R, s, 2, (k, x, y, out) => {
    const base = k * C * rs;
    if (rgb) {
      const i = base + y * S + x; out[0] = px[i]; out[1] = px[i + rs]; out[2] = px[i + 2 * rs];
      return;
    }
    const ch = Math.floor(x / (S + 1)), sx = x % (S + 1);
    if (sx === S) { out[0] = out[1] = out[2] = 255; return; }
    out[0] = out[1] = out[2] = px[base + ch * rs + y * S + sx];
  });
}

function drawPredictions(preds) {
  document.querySelectorAll(".sample").forEach((t, i) => {
    const bars = t.querySelector(".bars");
    while (bars.children.length > 1) bars.lastChild.remove();
    const truth = info.sample[i].label;
    for (const p of preds[i] || []) {
      bars.appendChild(bar(info.classes[p.index], p.p, p.index === truth));
    }
  });
}

function bar(name, p, isTrue) {
  const row = el("div", "barrow" + (isTrue ? " true" : ""));
  const fill = el("div", "fill");
  fill.style.width = (100 * (p || 0)).toFixed(1) + "%";
  row.append(fill, el("span", "text", `${name} ${(100 * (p || 0)).toFixed(1)}%`));
  return row;
}

// ------------------------------------------------------------------------ controls
function wireControls() {
  $("pause").addEventListener("click", async () => {
    const r = await api(stats && stats.paused ? "/api/resume" : "/api/pause", {});
    if (r.ok) showMessage(r.paused ? `paused after step ${r.step}` : `resumed at step ${r.step}`, true);
  });
  $("save").addEventListener("click", async () => {
    const r = await api("/api/save", {});
    if (r.ok) showMessage(`saved ${r.path} (${r.where})`, true);
  });
  for (const k of ["lr", "momentum", "weight_decay"]) {
    $("in-" + k).addEventListener("input", () => { hyperEdited = true; });
  }
  $("hyper").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const k of ["lr", "momentum", "weight_decay"]) {
      const input = $("in-" + k), text = input.value.trim();
      input.classList.remove("bad");
      if (stats && text === fmtInput(stats[k])) continue;
      const v = Number(text);
      // sent as typed: the server checks type and range and says what is wrong
      body[k] = text === "" || Number.isNaN(v) ? text : v;
    }
    if (!Object.keys(body).length) { showMessage("nothing changed", true); hyperEdited = false; return; }
    const r = await api("/api/set", body);
    if (r.ok) {
      hyperEdited = false;
      showMessage(`applied from step ${r.from_step}: lr ${fmt(r.lr)}, momentum ${fmt(r.momentum)}, ` +
                  `weight decay ${fmt(r.weight_decay)}`, true);
    } else {
      for (const k of Object.keys(body)) if ((r.error || "").startsWith(k)) $("in-" + k).classList.add("bad");
    }
  });
  $("upload").addEventListener("change", async () => {
    const f = $("upload").files[0];
    if (!f) return;
    const r = await api(`/api/predict?invert=${$("invert").checked ? 1 : 0}`, f, f.type || "application/octet-stream");
    const out = $("upload-result");
    out.textContent = "";
    if (!r.ok) return;
    const [h, w, ch] = r.shape, px = bytes(r.image);
    const c = document.createElement("canvas");
    drawPixels(c, w, h, 64 / Math.max(h, w), (k) => ch === 3 ? [px[3 * k], px[3 * k + 1], px[3 * k + 2]]
                                                             : [px[k], px[k], px[k]]);
    const bars = el("div", "bars");
    bars.appendChild(el("div", "note", `${f.name}: ${r.note} (step ${r.step})`));
    for (const p of r.top.slice(0, 3)) bars.appendChild(bar(p.cls, p.p, false));
    out.append(c, bars);
    out.dataset.top = r.top[0].cls;
    showMessage(`${f.name}: ${r.top[0].cls} (${(100 * r.top[0].p).toFixed(1)}%)`, true);
  });
}

// ------------------------------------------------------------------------ events
function connect() {
  const es = new EventSource("/events");
  es.addEventListener("info", (e) => onInfo(JSON.parse(e.data)));
  es.addEventListener("stats", (e) => { if (info) onStats(JSON.parse(e.data)); });
  es.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  es.addEventListener("bye", () => {
    es.close();
    const badge = $("status");
    badge.textContent = "disconnected";
    badge.className = "badge disconnected";
    $("status-text").textContent = "the server stopped (Ctrl-C); this page shows the last state";
    for (const id of ["pause", "apply", "save", "upload"]) $(id).disabled = true;
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) return;
    $("status-text").textContent = "connection lost; retrying";
  };
}

document.body.dataset.run = RUN;
wireControls();
connect();
