// The playground (book/playground.md): the book's trained model, exported to ONNX at build time
// (tinyformer/book/export.py), run in the reader's browser by onnxruntime-web on one thread, in a
// Web Worker (playground-worker.js): downloading, compiling and running the model never block
// the page, which reads, scrolls and shows progress while the model arrives.
//
// Loaded as a module by the playground page only (_ext/tinyformer_book.py); the runtime
// (ort.wasm.min.mjs, ort-wasm-simd-threaded.wasm, numThreads = 1) and the model are fetched from
// this site by the worker when the page opens, never by any other page.
// Computed values go into data-* attributes (data-prob on each bar, data-weights on the heatmap,
// ...) so tests/test_playground.py reads exact numbers, not rounded text.

const STATIC = new URL("./", import.meta.url);              // _static/
const ORT_DIR = new URL("onnxruntime-web/", STATIC);         // assets/vendor/onnxruntime-web
const MODEL_DIR = new URL("playground/", STATIC);            // written by the export at build time
const WASM = "ort-wasm-simd-threaded.wasm";                  // the runtime's one wasm file
const TOP_N = 10;                                            // bars in the chart
const UNKNOWN_SHOWN = 5;                                     // unknown characters named in a note

// ---------------------------------------------------------------- sampling maths
// A port of tinyformer.sampling.next_token_distribution, step for step, in float32 like
// PyTorch (Math.fround rounds each result to float32): temperature divides the logits,
// top-k masks every logit below the k-th largest (ties with it stay), softmax, then top-p
// keeps each token whose strictly-better mass is below p (so the token crossing p stays).

const f32 = Math.fround;

export function nextTokenDistribution(logits, temperature = 1, topK = null, topP = null) {
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new Error(`temperature must be a finite number >= 0 (0 = greedy), got ${temperature}`);
  }
  if (topK !== null && !(Number.isInteger(topK) && topK >= 1)) {
    throw new Error(`top_k must be an integer >= 1 (or null to keep every token), got ${topK}`);
  }
  if (topP !== null && !(topP > 0 && topP <= 1)) {
    throw new Error(`top_p must be a number in (0, 1] (or null to keep every token), got ${topP}`);
  }
  const V = logits.length;
  if (logits.some(Number.isNaN)) throw new Error("logits contain NaN: there is no distribution to sample");
  const probs = new Float32Array(V);
  if (temperature === 0) {                                   // greedy: all mass on the (first) argmax
    probs[argmax(logits)] = 1;
    return probs;
  }
  const tau = f32(temperature);                              // torch divides by the float32 scalar
  let scaled = Float32Array.from(logits, (z) => z / tau);    // stored as float32: rounded
  if (scaled.some((s, i) => !Number.isFinite(s) && Number.isFinite(logits[i]))) {
    throw new Error(`temperature ${temperature} is so small that logits / temperature overflow float32; use 0 for greedy`);
  }
  if (topK !== null && topK < V) {
    const kth = Float32Array.from(scaled).sort().reverse()[topK - 1];   // k-th largest value
    scaled = scaled.map((s) => (s < kth ? -Infinity : s));
  }
  const max = scaled.reduce((a, b) => Math.max(a, b), -Infinity);
  const exps = scaled.map((s) => f32(Math.exp(f32(s - max))));
  const total = f32(exps.reduce((a, b) => a + b, 0));
  for (let i = 0; i < V; i++) probs[i] = exps[i] / total;
  if (topP !== null && topP < 1) {
    const p = f32(topP);                                     // compared in float32, as in torch
    const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a] || a - b);
    let cumulative = 0;                                      // torch's CPU cumsum adds in float64
    const keep = new Uint8Array(V);
    for (const i of order) {
      const massBefore = f32(f32(cumulative + probs[i]) - probs[i]);   // cumsum - sorted, in float32
      cumulative += probs[i];
      keep[i] = massBefore < p ? 1 : 0;
    }
    let kept = 0;
    for (let i = 0; i < V; i++) kept += (probs[i] = probs[i] * keep[i]);
    kept = f32(kept);
    for (let i = 0; i < V; i++) probs[i] = probs[i] / kept;
  }
  return probs;
}

export function argmax(values) {                             // first index of the largest, like torch.argmax
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// Sampling needs reproducible random numbers: mulberry32, a small seeded generator (32-bit
// state), so a test can replay it in Python. Math.random is never used.
export function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;            // uniform in [0, 1)
  };
}

// Inverse-CDF draw: walk the tokens in id order until the running mass passes u.
export function drawToken(probs, u) {
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last;                                               // u beyond a total of 1 - rounding
}

// ---------------------------------------------------------------- page state

const $ = (id) => document.getElementById(id);
const root = $("playground");
const ui = {
  status: $("pg-status"), progress: $("pg-progress"), prompt: $("pg-prompt"), promptNote: $("pg-prompt-note"),
  temperature: $("pg-temperature"), topK: $("pg-top-k"), topP: $("pg-top-p"),
  bars: $("pg-bars"), barsCaption: $("pg-bars-caption"),
  length: $("pg-length"), seed: $("pg-seed"), greedy: $("pg-greedy"), sample: $("pg-sample"), stop: $("pg-stop"),
  output: $("pg-output"), layer: $("pg-layer"), head: $("pg-head"), query: $("pg-query"),
  readout: $("pg-attention-readout"), heatmap: $("pg-heatmap"),
};
let worker, meta, chars, stoi;
let current = null;        // the last prediction: {text, ids, logits (last position), attention [L][H*T*T], T}
let generating = false;
let problem = null;         // why the prompt cannot be read, while it cannot
let stopRequested = false;

const show = (c) => ({ " ": "␣", "\n": "⏎" }[c] ?? c);      // visible labels, as in the chapters

function setStatus(text, state) {
  ui.status.textContent = text;
  if (state) root.dataset.state = state;
}

// ---------------------------------------------------------------- loading

function webAssemblyWorks() {
  try {  // the smallest valid module: magic number and version
    return typeof WebAssembly === "object" && WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  } catch {
    return false;
  }
}

async function load() {
  if (!webAssemblyWorks()) {
    setStatus("This playground needs WebAssembly, which this browser does not offer (it may be turned off, "
      + "for example by a security setting). The rest of the book works without it.", "no-wasm");
    return;
  }
  const [runtime, info, vocab] = await Promise.all(
    [new URL("manifest.json", ORT_DIR), new URL("model.json", MODEL_DIR), new URL("vocab.json", MODEL_DIR)]
      .map(async (url) => { const r = await fetch(url); if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status}`); return r.json(); }));
  meta = info;
  chars = vocab.chars;
  stoi = new Map(chars.map((c, i) => [c, i]));
  const total = runtime.files[WASM].bytes + meta.model_bytes;
  let loaded = 0;
  ui.progress.max = total;
  ui.progress.value = 0;
  ui.progress.hidden = false;
  const mb = (n) => (n / 1e6).toFixed(1);
  const tick = (n) => {
    loaded += n;
    ui.progress.value = loaded;
    setStatus(`Downloading the runtime (onnxruntime-web ${runtime.version}, ${mb(runtime.files[WASM].bytes)} MB) `
      + `and the model (${mb(meta.model_bytes)} MB): ${mb(loaded)} of ${mb(total)} MB…`);
  };
  tick(0);
  worker = new Worker(new URL("playground-worker.js", STATIC), { type: "module" });
  await new Promise((resolve, reject) => {
    worker.onerror = (event) => reject(new Error(event.message || "the model's worker failed to start"));
    worker.onmessage = ({ data }) => {
      if (data.type === "progress") tick(data.bytes);
      else if (data.type === "downloaded") {
        ui.progress.hidden = true;
        root.dataset.downloadedMs = performance.now().toFixed(0);
        setStatus("Starting the model…");
      } else if (data.type === "ready") resolve();
      else if (data.type === "error") reject(new Error(data.message));
    };
    worker.postMessage({ type: "load", wasm: WASM, model: meta.model, input: meta.input, outputs: meta.outputs });
  });
  worker.onmessage = ({ data }) => {
    const waiting = pending.get(data.id);
    pending.delete(data.id);
    if (waiting && data.type === "result") waiting.resolve(data);
    else if (waiting) waiting.reject(new Error(data.message));
  };
  root.dataset.sessionMs = performance.now().toFixed(0);
  setUp();
}

function setUp() {
  ui.topK.max = String(meta.vocab_size);
  for (let l = 0; l < meta.n_layers; l++) ui.layer.add(new Option(String(l), String(l)));
  for (let h = 0; h < meta.n_heads; h++) ui.head.add(new Option(String(h), String(h)));
  ui.prompt.value = meta.prompt;
  root.dataset.contextLength = meta.context_length;
  for (const el of root.querySelectorAll("input, select, textarea, button")) el.disabled = false;
  ui.stop.disabled = true;
  ui.prompt.addEventListener("input", predict);
  for (const knob of [ui.temperature, ui.topK, ui.topP]) knob.addEventListener("input", renderBars);
  for (const pick of [ui.layer, ui.head, ui.query]) pick.addEventListener("input", renderHeatmap);
  ui.greedy.addEventListener("click", () => generate(false));
  ui.sample.addEventListener("click", () => generate(true));
  ui.stop.addEventListener("click", () => { stopRequested = true; });
  // The theme switcher changes <html data-theme>: redraw the map in the new colours.
  new MutationObserver(renderHeatmap).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  setStatus(`Ready: the book's model (${meta.parameters.toLocaleString("en")} parameters, ${meta.n_layers} layers of `
    + `${meta.n_heads} heads, ${meta.vocab_size} characters, a context of ${meta.context_length}) runs in this page.`, "ready");
  predict();
}

// ---------------------------------------------------------------- running the model

// Each run is a message to the worker, which runs them one at a time, in order; the answer
// carries the outputs in meta.outputs' order (logits first, then each layer's attention).
const pending = new Map();
let runs = 0;
async function forward(ids) {
  const id = ++runs;
  const answer = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  worker.postMessage({ type: "run", id, ids });
  const { ms, outputs } = await answer;
  root.dataset.forwardMs = ms.toFixed(2);
  return { logits: outputs[0], attention: outputs.slice(1) };
}

function encode(text) {
  const characters = [...text];
  const unseen = characters.filter((c) => !stoi.has(c));
  if (unseen.length) {             // named, but only the first few: a pasted page must not make a page-long note
    const distinct = [...new Set(unseen)];
    const named = distinct.slice(0, UNKNOWN_SHOWN).map((c) => JSON.stringify(c)).join(", ");
    const more = distinct.length > UNKNOWN_SHOWN ? ` and ${(distinct.length - UNKNOWN_SHOWN).toLocaleString("en")} more` : "";
    const count = distinct.length === unseen.length ? "" : `, ${unseen.length.toLocaleString("en")} in all`;
    throw new Error(`${distinct.length.toLocaleString("en")} character${distinct.length === 1 ? "" : "s"} this model `
      + `never saw${count}: ${named}${more}`);
  }
  return characters.map((c) => stoi.get(c));
}

// Typing fires many events; only the latest prompt is run, one run at a time.
let wanted = null;
let pumping = false;
function predict() {
  wanted = { text: ui.prompt.value, since: performance.now() };
  if (!pumping) pump();
}

async function pump() {
  pumping = true;
  try {
    while (wanted) {
      const { text, since } = wanted;
      wanted = null;
      try {
        await showPrediction(text);
        root.dataset.updateMs = (performance.now() - since).toFixed(2);
        if (!root.dataset.firstPredictionMs) root.dataset.firstPredictionMs = performance.now().toFixed(0);
      } catch (error) {           // a prompt the model cannot read, or a failed run: say so, keep going
        current = null;
        problem = error.message;
        ui.promptNote.textContent = `The model cannot read this prompt: ${error.message}.`;
        ui.promptNote.classList.add("pg-error");
        ui.bars.replaceChildren();
        ui.bars.dataset.prompt = text;
        ui.heatmap.replaceChildren();
        ui.readout.textContent = "";
      }
    }
  } finally {
    pumping = false;
  }
}

async function showPrediction(text) {
  if (!text.length) throw new Error("type at least one character");
  const ids = encode(text);
  const cropped = ids.slice(-meta.context_length);            // as generate() crops its input
  const out = await forward(cropped);
  const T = cropped.length;
  const V = meta.vocab_size;
  current = {
    text, T, ids: cropped,
    logits: out.logits.slice((T - 1) * V, T * V),            // the prediction after the last character
    attention: out.attention,
  };
  problem = null;
  ui.promptNote.classList.remove("pg-error");
  ui.promptNote.textContent = ids.length > T
    ? `The model reads the last ${T} of these ${ids.length} characters (its context).`
    : `${T} characters, all inside the model's context of ${meta.context_length}.`;
  renderBars();
  ui.query.max = String(T - 1);
  ui.query.value = String(T - 1);
  renderHeatmap();
}

function settings() {
  const topK = Number(ui.topK.value);
  const topP = Number(ui.topP.value);
  return { temperature: Number(ui.temperature.value), topK: topK >= 1 ? topK : null, topP: topP < 1 ? topP : null };
}

// ---------------------------------------------------------------- the bar chart

function renderBars() {
  const { temperature, topK, topP } = settings();
  $("pg-temperature-value").textContent = temperature.toFixed(2) + (temperature === 0 ? " (greedy)" : "");
  $("pg-top-k-value").textContent = topK === null ? "off" : String(topK);
  $("pg-top-p-value").textContent = topP === null ? "off" : topP.toFixed(2);
  if (!current) return;
  let probs;
  try {
    probs = nextTokenDistribution(current.logits, temperature, topK, topP);
  } catch (error) {
    ui.barsCaption.textContent = error.message;
    return;
  }
  const kept = probs.reduce((n, p) => n + (p > 0), 0);
  const top = [...probs.keys()].filter((i) => probs[i] > 0).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, TOP_N);
  ui.bars.replaceChildren(...top.map((i) => {
    const item = document.createElement("li");
    item.dataset.token = String(i);
    item.dataset.char = chars[i];
    item.dataset.prob = String(probs[i]);
    const label = document.createElement("span");
    label.className = "pg-char";
    label.textContent = show(chars[i]);
    label.title = chars[i] === " " ? "space" : chars[i] === "\n" ? "new line" : chars[i];
    const bar = document.createElement("span");
    bar.className = "pg-bar";
    bar.style.width = `${(100 * probs[i]).toFixed(2)}%`;
    const value = document.createElement("span");
    value.className = "pg-prob";
    value.textContent = probs[i].toFixed(3);
    const track = document.createElement("span");
    track.className = "pg-track";
    track.append(bar);
    item.append(label, track, value);
    return item;
  }));
  Object.assign(ui.bars.dataset, { prompt: current.text, temperature, topK: topK ?? "", topP: topP ?? "", kept });
  ui.barsCaption.textContent = kept < TOP_N
    ? `Only ${kept} character${kept === 1 ? "" : "s"} keep a probability above 0 with these settings.`
    : `The ${TOP_N} most likely next characters of ${kept} with a probability above 0.`;
}

// ---------------------------------------------------------------- the attention heatmap

// Drawn on a canvas: a 64-character prompt has 2080 cells, and as SVG elements they made each
// update several times slower than the model run itself. The weights drawn are also written to
// the canvas's data-weights (row q holds keys 0..q), and the tick labels to data-labels.

const CELL = 11;          // canvas units per cell (scaled to the width the page gives it)
const MARGIN = 14;        // room for the tick labels
let hovered = null;       // the cell under the pointer, for the readout

function themeColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#0b66d0";
}

function renderHeatmap() {
  if (!current) return;
  const { T, ids } = current;
  const layer = Number(ui.layer.value);
  const head = Number(ui.head.value);
  const query = Math.min(Number(ui.query.value), T - 1);
  const map = current.attention[layer].subarray(head * T * T, (head + 1) * T * T);   // (T, T), row = query
  const labels = ids.map((i) => show(chars[i]));
  const size = MARGIN + T * CELL;
  if (hovered && hovered.q >= T) hovered = null;
  let canvas = ui.heatmap.querySelector("canvas");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.addEventListener("pointermove", (event) => hover(event, canvas));
    canvas.addEventListener("pointerleave", () => { hovered = null; describe(); });
    ui.heatmap.replaceChildren(canvas);
  }
  const scale = Math.max(1, Math.ceil(window.devicePixelRatio || 1)) * 2;   // sharp text when scaled up
  canvas.width = canvas.height = size * scale;
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.fillStyle = themeColor("--bg");
  ctx.fillRect(0, 0, size, size);
  const ink = themeColor("--link");
  const weights = [];
  ctx.fillStyle = ink;
  for (let q = 0; q < T; q++) {
    const row = Array.from(map.subarray(q * T, q * T + q + 1));   // above the diagonal: masked, no cell
    weights.push(row);
    row.forEach((w, k) => {
      ctx.globalAlpha = w;                                      // darker = more weight
      ctx.fillRect(MARGIN + k * CELL, MARGIN + q * CELL, CELL, CELL);
    });
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = themeColor("--fg");
  ctx.font = `9px ${getComputedStyle(ui.heatmap).fontFamily}`;
  labels.forEach((label, t) => {
    const middle = MARGIN + t * CELL + CELL / 2;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(label, MARGIN - 2, middle);                    // query (row) labels down the left
    ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.fillText(label, middle, MARGIN - 2);                    // key (column) labels across the top
  });
  ctx.strokeStyle = themeColor("--fg");
  ctx.strokeRect(MARGIN, MARGIN + query * CELL, (query + 1) * CELL, CELL);   // the reading character's row
  Object.assign(canvas.dataset, { weights: JSON.stringify(weights), labels: JSON.stringify(labels) });
  Object.assign(ui.heatmap.dataset, { layer, head, T, query, prompt: current.text });
  $("pg-query-value").textContent = `${query} “${labels[query]}”`;
  describe();
}

// The readout under the map (and the canvas's text alternative): the reading character's three
// strongest keys, or the cell under the pointer.
function describe() {
  const canvas = ui.heatmap.querySelector("canvas");
  if (!canvas || !current) return;
  const { layer, head, query } = ui.heatmap.dataset;
  const weights = JSON.parse(canvas.dataset.weights);
  const labels = JSON.parse(canvas.dataset.labels);
  const q = Number(query);
  const best = [...weights[q].keys()].sort((a, b) => weights[q][b] - weights[q][a]).slice(0, 3);
  const key = (k, row) => `“${labels[k]}” (position ${k}, ${weights[row][k].toFixed(2)})`;
  const summary = `Layer ${layer}, head ${head}: character ${q} “${labels[q]}” puts most weight on `
    + best.map((k) => key(k, q)).join(", then ") + ".";
  canvas.setAttribute("aria-label", `Attention heatmap of layer ${layer}, head ${head} over the ${labels.length} `
    + `characters of the prompt: rows read, columns are read, lower triangle only. ${summary}`);
  ui.readout.textContent = hovered
    ? `Layer ${layer}, head ${head}: character ${hovered.q} “${labels[hovered.q]}” gives ${key(hovered.k, hovered.q)}.`
    : summary;
}

function hover(event, canvas) {
  const box = canvas.getBoundingClientRect();
  const units = (MARGIN + current.T * CELL) / box.width;
  const k = Math.floor(((event.clientX - box.left) * units - MARGIN) / CELL);
  const q = Math.floor(((event.clientY - box.top) * units - MARGIN) / CELL);
  const inside = q >= 0 && q < current.T && k >= 0 && k <= q;
  if (inside ? !hovered || hovered.q !== q || hovered.k !== k : hovered) {
    hovered = inside ? { q, k } : null;
    describe();
  }
}

// ---------------------------------------------------------------- generation

async function generate(sampled) {
  if (generating) return;
  if (!current) {                  // the prompt cannot be read (or is still running): say why, not nothing
    ui.output.textContent = `Nothing to generate from: ${problem ?? "the prompt is still being read; try again"}.`;
    ui.output.dataset.state = "refused";
    return;
  }
  const length = Math.trunc(Number(ui.length.value));
  const seed = Math.trunc(Number(ui.seed.value));
  if (!(length >= 1 && length <= 200)) { ui.output.textContent = "Characters: choose 1 to 200."; return; }
  if (sampled && !(seed >= 0 && seed <= 4294967295)) { ui.output.textContent = "Seed: choose 0 to 4294967295."; return; }
  const { temperature, topK, topP } = sampled ? settings() : { temperature: 0, topK: null, topP: null };
  const random = mulberry32(seed);
  let ids = encode(current.text);
  let text = "";
  generating = true;
  stopRequested = false;
  ui.greedy.disabled = ui.sample.disabled = true;
  ui.stop.disabled = false;
  const written = document.createElement("mark");
  ui.output.replaceChildren(current.text, written);
  ui.output.dataset.state = "running";
  try {
    for (let step = 0; step < length && !stopRequested; step++) {
      const window = ids.slice(-meta.context_length);        // crop to the context, as generate() does
      const out = await forward(window);
      const V = meta.vocab_size;
      const logits = out.logits.slice((window.length - 1) * V, window.length * V);
      const next = temperature === 0 ? argmax(logits)
        : drawToken(nextTokenDistribution(logits, temperature, topK, topP), random());
      ids.push(next);
      text += chars[next];
      written.textContent = text;                             // streams: the page repaints between runs
      ui.output.dataset.text = text;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } catch (error) {
    ui.output.append(`\n(stopped: ${error.message})`);
  } finally {
    Object.assign(ui.output.dataset, { state: "done", mode: sampled ? "sampled" : "greedy", seed, temperature,
      topK: topK ?? "", topP: topP ?? "", text });
    generating = false;
    ui.greedy.disabled = ui.sample.disabled = false;
    ui.stop.disabled = true;
  }
}

// Imported elsewhere (tests/test_playground.py checks the sampling maths), only the exports are used.
// The runtime and the model (18 MB) wait for the page's own files (its text, styles, math), so
// that the page shows and reads first, and is not held up behind them on a slow network.
if (root) {
  const start = () => load().catch((error) => {
    ui.progress.hidden = true;
    setStatus(`The playground could not start: ${error.message}`, "error");
    console.error(error);
  });
  if (document.readyState === "complete") start();
  else window.addEventListener("load", start, { once: true });
}
