"""The playground page (book/playground.md): the book's trained model in the reader's browser.

Three layers of checks:
- the vendored runtime (assets/vendor/onnxruntime-web) against its manifest (fast, no build);
- the build's export (_build/html/_static/playground) against PyTorch with onnxruntime (book);
- the page in Chromium against PyTorch (browser): the probabilities shown, every knob, greedy
  and seeded text, the heatmap cells, a phone width, the keyboard, no WebAssembly.
Expected values are computed here, in Python, from the same cached trained model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys

import numpy as np
import pytest
import torch

from site_build import HTML, ROOT, build_site, toc_files

ORT_DIR = ROOT / "assets" / "vendor" / "onnxruntime-web"
PLAYGROUND_JS = ROOT / "assets" / "playground" / "playground.js"
PLAYGROUND_WORKER = ROOT / "assets" / "playground" / "playground-worker.js"  # fetches and runs the model
BUILT = HTML / "_static" / "playground"
BUDGET_BYTES = 20_000_000  # the model file plus the runtime the page fetches
TOL = 1e-4

sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402


# ---------------------------------------------------------------- the vendored runtime


def _manifest() -> dict:
    return json.loads((ORT_DIR / "manifest.json").read_text(encoding="utf-8"))


def test_vendored_runtime_matches_its_manifest():
    manifest = _manifest()
    assert manifest["package"] == "onnxruntime-web" and manifest["version"] == tasks.ORT_VERSION
    assert tuple(manifest["files"]) == tasks.ORT_FILES
    present = sorted(p.name for p in ORT_DIR.iterdir())
    assert present == sorted([*tasks.ORT_FILES, *tasks.ORT_KEEP]), "only the wasm backend's files, licence, README"
    for name, entry in manifest["files"].items():
        data = (ORT_DIR / name).read_bytes()
        assert len(data) == entry["bytes"], name
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name} differs from manifest.json"
    header = (ORT_DIR / "ort.wasm.min.mjs").read_text(encoding="utf-8")[:200]
    assert f"ONNX Runtime Web v{manifest['version']}" in header
    assert (ORT_DIR / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert manifest["refresh"] in (ORT_DIR / "README.md").read_text(encoding="utf-8")


def test_page_script_uses_only_this_site():
    """No CDN: every URL the scripts build is relative to their own location in _static/."""
    page, worker = (path.read_text(encoding="utf-8") for path in (PLAYGROUND_JS, PLAYGROUND_WORKER))
    for source in (page, worker):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", source), "the playground must not fetch from other sites"
    assert 'import(new URL("ort.wasm.min.mjs", ORT_DIR)' in worker and "ort.wasm.min.mjs" in _manifest()["files"]
    assert 'const WASM = "ort-wasm-simd-threaded.wasm"' in page and "ort-wasm-simd-threaded.wasm" in _manifest()["files"]
    assert "ort.env.wasm.numThreads = 1;" in worker
    assert "import(" not in page.split("// ---------------------------------------------------------------- page state")[1], \
        "the page itself never loads the runtime: the worker does"


# ---------------------------------------------------------------- the build's export


@pytest.fixture(scope="module")
def site():
    result = build_site()
    assert result["returncode"] == 0, "strict build failed:\n" + result["log"][-6000:]
    return result


@pytest.fixture(scope="module")
def book_model():
    """The cached BOOK_RUN the chapters (and the export) use."""
    from tinyformer.book.runs import BOOK_RUN, load_or_train

    run = load_or_train(BOOK_RUN, progress=False)
    return run.model.eval(), run.tokenizer


@pytest.fixture(scope="module")
def exported(site):
    ort = pytest.importorskip("onnxruntime")
    meta = json.loads((BUILT / "model.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(BUILT / meta["model"]), providers=["CPUExecutionProvider"])
    return meta, session


PROMPTS = [
    "And the LORD spake unto Mo",  # the sampling chapter's
    "In the beginning God created the heaven",
    # longer than the context (64): the page, like generate(), reads the last 64 characters
    "And it came to pass, when the king heard the words of the book of the law, that he rent",
]


def _torch_outputs(model, tokenizer, text):
    ids = torch.tensor([tokenizer.encode(text)[-model.config.context_length:]])
    with torch.no_grad():
        logits, weights = model(ids, return_weights=True)
    return ids, logits, weights


@pytest.mark.book
def test_build_exports_the_book_model_with_its_vocabulary(site, exported, book_model):
    meta, session = exported
    model, tokenizer = book_model
    assert hashlib.sha256((BUILT / meta["model"]).read_bytes()).hexdigest() == meta["model_sha256"]
    assert json.loads((BUILT / "vocab.json").read_text(encoding="utf-8"))["chars"] == tokenizer.chars
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert tokenizer.encode(meta["prompt"])
    for text in PROMPTS:
        ids, logits, weights = _torch_outputs(model, tokenizer, text)
        outputs = session.run(None, {"token_ids": ids.numpy()})
        np.testing.assert_allclose(outputs[0], logits.numpy(), rtol=0, atol=TOL, err_msg=text)
        for layer, (got, want) in enumerate(zip(outputs[1:], weights)):
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOL, err_msg=f"{text!r}, layer {layer}")


@pytest.mark.book
def test_runtime_and_model_fit_the_budget_and_only_the_playground_loads_them(site):
    runtime = [HTML / "_static" / "onnxruntime-web" / name for name in tasks.ORT_FILES]
    for path in runtime:
        assert path.read_bytes() == (ORT_DIR / path.name).read_bytes(), f"{path.name} not copied as vendored"
    added = sum(p.stat().st_size for p in runtime) + sum(p.stat().st_size for p in BUILT.iterdir())
    assert added <= BUDGET_BYTES, f"the playground adds {added / 1e6:.1f} MB, over the {BUDGET_BYTES / 1e6:.0f} MB budget"
    pages = [p for p in HTML.glob("*.html") if "playground.js" in p.read_text(encoding="utf-8")]
    assert [p.name for p in pages] == ["playground.html"]


# ---------------------------------------------------------------- the page in Chromium

from test_browser import VIEWPORTS, browser, server  # noqa: E402,F401  (fixtures)

READY = "document.getElementById('playground').dataset.state === 'ready' && document.querySelector('#pg-bars li')"


class PlaygroundVisit:
    """The playground page in its own context, with what went wrong and every URL it requested."""

    def __init__(self, browser, server, viewport="desktop", scheme="light", init_script=None):
        self.context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.console_errors, self.failed, self.requests = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(f"{server}playground.html", wait_until="load")


def _wait_ready(visit):
    visit.page.wait_for_function(READY, timeout=60_000)


def _reset_knobs(page) -> None:
    for knob, value in (("pg-temperature", 1), ("pg-top-k", 0), ("pg-top-p", 1)):
        _set(page, knob, value)


def _set(page, element_id: str, value) -> None:
    """Set a control the way a reader does (an input event), for range inputs Playwright cannot fill."""
    page.evaluate("([id, v]) => { const el = document.getElementById(id); el.value = v; "
                  "el.dispatchEvent(new Event('input', {bubbles: true})); }", [element_id, str(value)])


def _bars(page, prompt: str, temperature: float, top_k, top_p):
    """The bars shown once they are for this prompt and these settings: [(token id, prob)], kept."""
    want = {"prompt": prompt, "temperature": repr(float(temperature)).removesuffix(".0"),
            "topK": "" if top_k is None else str(top_k), "topP": "" if top_p is None else repr(float(top_p))}
    page.wait_for_function(
        "want => { const d = document.getElementById('pg-bars').dataset; "
        "return Object.entries(want).every(([k, v]) => d[k] === v); }", arg=want, timeout=30_000)
    bars = page.evaluate("[...document.querySelectorAll('#pg-bars li')].map(li => [Number(li.dataset.token), Number(li.dataset.prob)])")
    return bars, int(page.evaluate("document.getElementById('pg-bars').dataset.kept"))


def _check_bars(bars, kept, probs: torch.Tensor, label: str) -> float:
    """The bars are Python's 10 most likely tokens (up to ties within TOL) with Python's probabilities."""
    nonzero = int((probs > 0).sum())
    assert kept == nonzero, f"{label}: {kept} tokens kept in the page, {nonzero} in Python"
    assert len(bars) == min(10, nonzero), label
    tenth = torch.topk(probs, len(bars)).values[-1].item()
    worst = 0.0
    for token, p in bars:
        worst = max(worst, abs(p - probs[token].item()))
        assert probs[token].item() >= tenth - TOL, f"{label}: token {token} is not among Python's top {len(bars)}"
    assert worst <= TOL, f"{label}: a probability differs from PyTorch's by {worst:.2e}"
    assert [p for _, p in bars] == sorted((p for _, p in bars), reverse=True), f"{label}: bars not in order"
    return worst


@pytest.fixture(scope="module")
def playground(server, browser):
    """One page at desktop width, shared by the tests below (the model loads once)."""
    visit = PlaygroundVisit(browser, server)
    _wait_ready(visit)
    yield visit
    visit.context.close()


@pytest.mark.browser
def test_page_loads_without_errors_and_shows_pytorchs_probabilities(playground, book_model, record_property):
    page = playground.page
    model, tokenizer = book_model
    _reset_knobs(page)
    worst = 0.0
    for text in PROMPTS:
        page.fill("#pg-prompt", text)
        bars, kept = _bars(page, text, 1.0, None, None)
        _, logits, _ = _torch_outputs(model, tokenizer, text)
        worst = max(worst, _check_bars(bars, kept, torch.softmax(logits[0, -1], -1), text))
    assert "reads the last 64" in page.inner_text("#pg-prompt-note")  # the long prompt was cropped, and says so
    record_property("largest_probability_difference", worst)
    print(f"largest |browser - PyTorch| probability: {worst:.2e}")
    assert not playground.console_errors, playground.console_errors
    assert not playground.failed, playground.failed


@pytest.mark.browser
def test_a_character_the_model_never_saw_is_named_not_dropped(playground):
    page = playground.page
    for text, problem in (("And the LORD spake unto Moïse", '"ï"'), ("", "at least one character")):
        page.fill("#pg-prompt", text)
        page.wait_for_function("t => document.getElementById('pg-bars').dataset.prompt === t", arg=text)
        assert problem in page.inner_text("#pg-prompt-note")
        assert page.locator("#pg-bars li").count() == 0
    page.fill("#pg-prompt", PROMPTS[0])
    _bars(page, PROMPTS[0], 1.0, None, None)  # and it recovers


@pytest.mark.browser
def test_a_pasted_page_of_unknown_characters_gets_a_short_note(playground):
    """20,000 characters the model never saw: the note names the first few and counts them all."""
    page = playground.page
    text = "".join(chr(0x4E00 + i) for i in range(20_000))  # CJK ideographs: none is in the vocabulary
    page.fill("#pg-prompt", text)
    page.wait_for_function("n => (document.getElementById('pg-bars').dataset.prompt || '').length === n", arg=len(text))
    note = page.inner_text("#pg-prompt-note")
    assert len(note) <= 200, f"a {len(note):,}-character note"
    assert "20,000 characters this model never saw" in note and '"\u4e00", "\u4e01"' in note and "19,995 more" in note
    page.fill("#pg-prompt", "Moïse, Moïse")  # one character twice: counted once, and the total said
    page.wait_for_function("t => document.getElementById('pg-bars').dataset.prompt === t", arg="Moïse, Moïse")
    assert '1 character this model never saw, 2 in all: "ï"' in page.inner_text("#pg-prompt-note")
    page.fill("#pg-prompt", PROMPTS[0])
    _bars(page, PROMPTS[0], 1.0, None, None)


@pytest.mark.browser
def test_generate_with_a_prompt_the_model_cannot_read_says_why(playground):
    page = playground.page
    text = "And the LORD spake unto Moïse"
    page.fill("#pg-prompt", text)
    page.wait_for_function("t => document.getElementById('pg-bars').dataset.prompt === t", arg=text)
    for button in ("#pg-greedy", "#pg-sample"):
        page.evaluate("document.getElementById('pg-output').textContent = ''")
        page.click(button)
        page.wait_for_function("document.getElementById('pg-output').textContent !== ''", timeout=5_000)
        said = page.inner_text("#pg-output")
        assert "Nothing to generate from" in said and 'never saw: "ï"' in said, said
    page.fill("#pg-prompt", PROMPTS[0])
    _bars(page, PROMPTS[0], 1.0, None, None)


@pytest.mark.browser
def test_the_model_runs_in_a_worker_not_on_the_page(playground):
    workers = [w.url for w in playground.page.workers]
    assert [u for u in workers if u.endswith("_static/playground-worker.js")], workers


KNOBS = [(0.5, None, None), (1.35, 5, None), (0.8, None, 0.6), (1.0, 12, 0.9), (2.0, 3, 0.95), (0.0, None, None)]


@pytest.mark.browser
@pytest.mark.parametrize("temperature, top_k, top_p", KNOBS, ids=[f"tau{t}-k{k}-p{p}" for t, k, p in KNOBS])
def test_knobs_change_the_distribution_as_next_token_distribution_does(playground, book_model, temperature, top_k, top_p):
    from tinyformer.sampling import next_token_distribution

    page = playground.page
    model, tokenizer = book_model
    text = PROMPTS[1]
    page.fill("#pg-prompt", text)
    _set(page, "pg-temperature", temperature)
    _set(page, "pg-top-k", top_k or 0)
    _set(page, "pg-top-p", top_p or 1)
    bars, kept = _bars(page, text, temperature, top_k, top_p)
    _, logits, _ = _torch_outputs(model, tokenizer, text)
    probs = next_token_distribution(logits[0, -1], temperature, top_k, top_p)
    if top_p is not None:  # a setting right at a nucleus boundary would test rounding, not the rule
        ranked = torch.sort(next_token_distribution(logits[0, -1], temperature, top_k), descending=True).values
        mass_before = torch.cumsum(ranked, 0) - ranked
        assert (mass_before - top_p).abs().min().item() > 1e-5, "choose another top_p: this one sits on a boundary"
    _check_bars(bars, kept, probs, f"tau={temperature}, top_k={top_k}, top_p={top_p}")
    _reset_knobs(page)


def _generate(page, button: str, length: int, seed: int = 0) -> str:
    _set(page, "pg-length", length)
    _set(page, "pg-seed", seed)
    page.evaluate("document.getElementById('pg-output').dataset.state = ''")
    page.click(button)
    page.wait_for_function("document.getElementById('pg-output').dataset.state === 'done'", timeout=60_000)
    return page.evaluate("document.getElementById('pg-output').dataset.text")


@pytest.mark.browser
def test_greedy_generation_is_pythons(playground, book_model):
    from tinyformer.sampling import generate

    page = playground.page
    model, tokenizer = book_model
    text = PROMPTS[0]
    page.fill("#pg-prompt", text)
    got = _generate(page, "#pg-greedy", 40)
    ids = generate(model, torch.tensor(tokenizer.encode(text)), 40, temperature=0)
    want = tokenizer.decode(ids[len(text):].tolist())
    assert got == want
    assert page.inner_text("#pg-output mark") == want  # the reader sees it, streamed into the page


def mulberry32(seed: int):
    """The page's random number generator (assets/playground/playground.js), in Python."""
    state = seed & 0xFFFFFFFF

    def imul(a, b):
        return (a * b) & 0xFFFFFFFF

    def draw() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & 0xFFFFFFFF
        t = imul(state ^ (state >> 15), state | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return draw


def draw_token(probs: torch.Tensor, u: float) -> int:
    """The page's inverse-CDF draw: the first token (in id order) whose running mass passes u."""
    cumulative = torch.cumsum(probs.double(), 0)
    passed = (cumulative > u).nonzero()
    return int(passed[0]) if len(passed) else int((probs > 0).nonzero()[-1])


@pytest.mark.browser
def test_sampled_generation_replays_in_python(playground, book_model):
    """Same distribution (next_token_distribution), same random numbers, same inverse-CDF draw."""
    from tinyformer.sampling import next_token_distribution

    page = playground.page
    model, tokenizer = book_model
    text, seed, length, tau, top_k, top_p = PROMPTS[1], 7, 40, 0.9, 20, 0.95
    page.fill("#pg-prompt", text)
    _set(page, "pg-temperature", tau)
    _set(page, "pg-top-k", top_k)
    _set(page, "pg-top-p", top_p)
    got = _generate(page, "#pg-sample", length, seed)
    draw, ids, margins = mulberry32(seed), tokenizer.encode(text), []
    for _ in range(length):
        with torch.no_grad():
            logits = model(torch.tensor([ids[-model.config.context_length:]]))[0, -1]
        probs = next_token_distribution(logits, tau, top_k, top_p)
        u = draw()
        ids.append(draw_token(probs, u))
        margins.append((torch.cumsum(probs.double(), 0) - u).abs().min().item())
    want = tokenizer.decode(ids[-length:])
    assert got == want, f"smallest distance of a draw to a boundary: {min(margins):.1e}"
    assert page.evaluate("document.getElementById('pg-output').dataset.mode") == "sampled"
    _reset_knobs(page)


@pytest.mark.browser
def test_heatmap_cells_are_the_exported_attention_weights(playground, exported, book_model):
    meta, session = exported
    model, tokenizer = book_model
    page = playground.page
    text, layer, head = PROMPTS[0], 2, 1
    page.fill("#pg-prompt", text)
    page.select_option("#pg-layer", str(layer))
    page.select_option("#pg-head", str(head))
    page.wait_for_function("([l, h, p]) => { const d = document.getElementById('pg-heatmap').dataset; "
                           "return d.layer === l && d.head === h && d.prompt === p; }", arg=[str(layer), str(head), text])
    drawn = page.evaluate("""() => { const c = document.querySelector('#pg-heatmap canvas');
        return {weights: JSON.parse(c.dataset.weights), labels: JSON.parse(c.dataset.labels), width: c.width}; }""")
    ids = np.array([tokenizer.encode(text)], dtype=np.int64)
    weights = session.run([f"attention_{layer}"], {"token_ids": ids})[0][0, head]  # (T, T)
    T = len(text)
    assert [len(row) for row in drawn["weights"]] == list(range(1, T + 1)), "row q has keys 0..q (causal)"
    got = np.zeros((T, T))
    for q, row in enumerate(drawn["weights"]):
        got[q, :q + 1] = row
    np.testing.assert_allclose(got, weights, rtol=0, atol=TOL)  # above the diagonal both are 0
    with torch.no_grad():
        _, torch_weights = model(torch.tensor(ids), return_weights=True)
    np.testing.assert_allclose(got, torch_weights[layer][0, head].numpy(), rtol=0, atol=TOL)
    assert drawn["labels"] == [{" ": "␣"}.get(c, c) for c in text], "tick labels are the prompt's characters"
    # What is painted follows the weights: on the light page, the heaviest cell of the last row is darker
    # (a smaller r + g + b) than its lightest one. Cell geometry as in playground.js (MARGIN 14, CELL 11).
    q = T - 1
    heavy, light = int(np.argmax(got[q, :T])), int(np.argmin(got[q, :T]))
    alpha = page.evaluate("""([q, keys]) => { const c = document.querySelector('#pg-heatmap canvas');
        const s = c.width / (14 + JSON.parse(c.dataset.labels).length * 11);  // canvas pixels per unit
        const ctx = c.getContext('2d');
        return keys.map(k => { const [r, g, b] = ctx.getImageData(Math.floor((14 + k * 11 + 5.5) * s),
            Math.floor((14 + q * 11 + 5.5) * s), 1, 1).data; return r + g + b; }); }""", [q, [heavy, light]])
    assert alpha[0] < alpha[1], f"the heaviest cell is not painted darker than the lightest: {alpha}"


SAMPLER_CASES = [
    ([1.0, 3.0, 3.0, 2.0, 3.0, 0.5], 1.0, 2, None),   # three-way tie at the k-th: all three stay
    ([1.0, 3.0, 3.0, 2.0, 3.0, 0.5], 0.0, None, None),  # greedy takes the first of tied maxima
    ([2.0, 1.0, 0.0, -1.0], 1.0, None, 0.5),           # the top token alone crosses p: it stays
    ([2.0, 1.0, 0.0, -1.0], 0.7, None, 0.9),
    ([0.0, 0.0, 0.0, 0.0], 1.0, None, 0.6),             # uniform: ties around the nucleus
    ([5.0, -float("inf"), 1.0, 2.0], 1.0, None, None),  # a masked logit
]


@pytest.mark.browser
def test_javascript_sampler_is_next_token_distribution(server, browser):
    """The page's nextTokenDistribution against tinyformer's, on ties, boundaries and random logits."""
    from tinyformer.sampling import next_token_distribution

    generator = torch.Generator().manual_seed(0)
    cases = list(SAMPLER_CASES)
    for i in range(30):
        logits = (torch.randn(63, generator=generator) * (0.5 + i / 5)).tolist()
        cases.append((logits, [0.0, 0.3, 1.0, 1.7][i % 4], [None, 1, 5, 40, 63, 80][i % 6], [None, 0.3, 0.75, 0.95, 1.0][i % 5]))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server}search.html")  # any page of the site (same origin); it has no playground
        results = page.evaluate(
            """async ([url, cases]) => {
                const m = await import(url);
                return cases.map(([logits, t, k, p]) => Array.from(m.nextTokenDistribution(
                    Float32Array.from(logits.map(x => x === null ? -Infinity : x)), t, k, p)));
            }""", [f"{server}_static/playground.js", [[[None if math.isinf(x) else x for x in c[0]], *c[1:]] for c in cases]])
        seeds = [0, 7, 2**32 - 1]
        js_random = page.evaluate("async ([url, seeds]) => { const m = await import(url); "
                                  "return seeds.map(s => { const r = m.mulberry32(s); return [r(), r(), r(), r()]; }); }",
                                  [f"{server}_static/playground.js", seeds])
        js_draws = page.evaluate("async url => { const m = await import(url); const p = Float32Array.of(0.25, 0, 0.5, 0.25); "
                                 "return [0, 0.2499, 0.25, 0.7, 0.75, 0.9999].map(u => m.drawToken(p, u)); }",
                                 f"{server}_static/playground.js")
        overflow = page.evaluate("async url => { const m = await import(url); try { m.nextTokenDistribution("
                                 "Float32Array.of(1, 2), 1e-45); return 'no error'; } catch (e) { return e.message; } }",
                                 f"{server}_static/playground.js")
    finally:
        context.close()
    for (logits, t, k, p), got in zip(cases, results):
        want = next_token_distribution(torch.tensor(logits), t, k, p)
        got = torch.tensor(got)
        assert torch.equal(got > 0, want > 0), f"kept tokens differ for tau={t}, top_k={k}, top_p={p}: {logits[:6]}"
        assert (got - want).abs().max().item() <= 1e-6, f"tau={t}, top_k={k}, top_p={p}"
    assert "overflow" in overflow
    for seed, values in zip(seeds, js_random):
        draw = mulberry32(seed)
        assert values == [draw() for _ in range(4)], f"the Python replay of the page's generator differs (seed {seed})"
    probs = torch.tensor([0.25, 0, 0.5, 0.25])
    assert js_draws == [draw_token(probs, u) for u in (0, 0.2499, 0.25, 0.7, 0.75, 0.9999)] == [0, 0, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="overflow"):
        next_token_distribution(torch.tensor([1.0, 2.0]), 1e-45)


@pytest.mark.browser
def test_phone_width_and_keyboard(server, browser):
    visit = PlaygroundVisit(browser, server, viewport="phone", scheme="dark")
    try:
        _wait_ready(visit)
        page = visit.page
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        assert page.locator("#pg-heatmap canvas").bounding_box()["width"] <= VIEWPORTS["phone"]["width"]
        _reset_knobs(page)
        text = page.input_value("#pg-prompt") + " And"
        # Keyboard only: type into the prompt, Tab to the temperature slider, step it down twice.
        page.focus("#pg-prompt")
        page.keyboard.press("End")
        page.keyboard.type(" And")
        _bars(page, text, 1.0, None, None)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "pg-temperature"
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        bars, _ = _bars(page, text, 0.9, None, None)
        assert bars
        _set(page, "pg-length", 8)
        page.focus("#pg-greedy")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('pg-output').dataset.state === 'done'", timeout=60_000)
        assert len(page.evaluate("document.getElementById('pg-output').dataset.text")) == 8
        assert not visit.console_errors, visit.console_errors
        assert not visit.failed, visit.failed
    finally:
        visit.context.close()


@pytest.mark.browser
def test_without_webassembly_the_page_says_so_and_fetches_nothing_heavy(server, browser):
    visit = PlaygroundVisit(browser, server, init_script="delete globalThis.WebAssembly;")
    try:
        page = visit.page
        page.wait_for_function("document.getElementById('playground').dataset.state === 'no-wasm'", timeout=30_000)
        assert "needs WebAssembly" in page.inner_text("#pg-status")
        assert page.is_visible("#pg-status")
        assert not [u for u in visit.requests if u.endswith((".wasm", ".onnx", ".mjs"))], visit.requests
        assert page.is_disabled("#pg-prompt")
    finally:
        visit.context.close()


@pytest.mark.browser
def test_other_pages_never_fetch_the_runtime_or_the_model(server, browser):
    for name in ("sampling", "inside"):
        assert name in toc_files()
        context = browser.new_context()
        try:
            page = context.new_page()
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{server}{name}.html", wait_until="load")
            page.wait_for_load_state("networkidle")
            heavy = [u for u in requests if "onnxruntime-web" in u or "_static/playground" in u]
            assert not heavy, f"{name}.html fetched {heavy}"
            assert page.locator("a[href='playground.html']").count() >= 1, f"{name}.html does not link the playground"
        finally:
            context.close()
