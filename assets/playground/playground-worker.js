// The playground's model, off the page's main thread: this module worker downloads
// onnxruntime-web's wasm and the exported model (reporting progress), starts the session and
// runs it, so compiling 11 MB of WebAssembly and every forward pass leave the page responsive.
//
// Started by assets/playground/playground.js. Messages in: {type: "load", wasm, model, input,
// outputs} then {type: "run", id, ids}; out: {type: "progress", bytes}, {type: "downloaded"},
// {type: "ready"}, {type: "result", id, ms, outputs: [Float32Array, ...]} and
// {type: "error", id?, message}.

const STATIC = new URL("./", import.meta.url);              // _static/
const ORT_DIR = new URL("onnxruntime-web/", STATIC);         // assets/vendor/onnxruntime-web
const MODEL_DIR = new URL("playground/", STATIC);            // written by the export at build time

let ort, session, names;

async function fetchWithProgress(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url.pathname}: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const parts = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    postMessage({ type: "progress", bytes: value.length });
  }
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) { bytes.set(p, offset); offset += p.length; }
  return bytes;
}

async function load({ wasm, model, input, outputs }) {
  names = { input, outputs };
  // Both downloads are ours (with progress); the runtime then compiles the wasm bytes we hand it.
  const [module, wasmBytes, modelBytes] = await Promise.all([
    import(new URL("ort.wasm.min.mjs", ORT_DIR).href),
    fetchWithProgress(new URL(wasm, ORT_DIR)),
    fetchWithProgress(new URL(model, MODEL_DIR)),
  ]);
  postMessage({ type: "downloaded" });
  ort = module;
  ort.env.wasm.numThreads = 1;        // static hosts are not cross-origin isolated: no threads
  ort.env.wasm.proxy = false;         // this is already the worker
  ort.env.wasm.wasmPaths = ORT_DIR.href;
  ort.env.wasm.wasmBinary = wasmBytes.buffer;
  // The export already simplified the graph (onnxruntime, basic level); doing it again here
  // would only add to the start-up time.
  session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["wasm"], graphOptimizationLevel: "disabled" });
  postMessage({ type: "ready" });
}

async function run({ id, ids }) {
  const tensor = new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]);
  const start = performance.now();
  const out = await session.run({ [names.input]: tensor });
  const ms = performance.now() - start;
  const arrays = names.outputs.map((name) => Float32Array.from(out[name].data));   // own buffers, to transfer
  postMessage({ type: "result", id, ms, outputs: arrays }, arrays.map((a) => a.buffer));
}

// One message at a time, in order: a run never starts before the session, nor overlaps another.
let chain = Promise.resolve();
self.onmessage = ({ data }) => {
  chain = chain.then(() => (data.type === "load" ? load(data) : run(data)))
    .catch((error) => postMessage({ type: "error", id: data.id, message: error.message }));
};
