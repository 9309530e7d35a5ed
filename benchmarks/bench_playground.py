"""The playground page in headless Chromium: bytes it adds, time to the first prediction, time per update.

    .venv/bin/python benchmarks/bench_playground.py

Needs the built site (python3 tasks.py build) and Debian's Chromium (/usr/bin/chromium). Serves
_build/html on 127.0.0.1 (so download time is nearly nil: what is measured is the page's own
work, compiling the runtime and running the model) and, each in a fresh browser context with
an empty cache:

- first prediction: from the page's load event to the first bars drawn (runtime compiled,
  model loaded, one forward pass, bars and heatmap rendered), median of --loads page loads;
- update: a 64-character prompt edited one character at a time, from the input event to the
  next painted frame with the new bars and heatmap (one forward pass each), median and 90th
  percentile of --updates edits; and a knob moved (no forward pass, the distribution recomputed);
- bytes: what the playground adds to the site (runtime files, exported model, vocabulary,
  its script and styles), from disk, and what the page actually transferred.

Budgets (issue 12): at most 20 MB added, first prediction at most 3 s, each update at most
100 ms. The run prints them beside the measurements and records both in results/playground.json.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import statistics
import threading
from pathlib import Path

from _common import ROOT, print_table, write_json

SITE = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
BUDGET = {"bytes": 20_000_000, "first_ms": 3000.0, "update_ms": 100.0}
PROMPT_64 = "And God said, Let there be light: and there was light. And God sa"[:64]
READY = "document.getElementById('playground').dataset.state === 'ready' && document.querySelector('#pg-bars li')"

# Edit the prompt n times (one different last character each time); resolve each edit when the bars
# and heatmap show the new prompt, then wait for the next frame to be painted.
UPDATES = """async ([base, n]) => {
  const prompt = document.getElementById('pg-prompt');
  const bars = document.getElementById('pg-bars');
  const heatmap = document.getElementById('pg-heatmap');
  const shown = (text) => new Promise((resolve) => {
    const check = () => bars.dataset.prompt === text && heatmap.dataset.prompt === text;
    if (check()) return resolve();
    const seen = new MutationObserver(() => { if (check()) { seen.disconnect(); resolve(); } });
    seen.observe(document.getElementById('playground'), {attributes: true, subtree: true});
  });
  const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const times = [], forward = [];
  for (let i = 0; i < n; i++) {
    const text = base.slice(0, -1) + 'abcdefghijklmnopqrstuvwxyz'[i % 26];
    const start = performance.now();
    prompt.value = text;
    prompt.dispatchEvent(new Event('input', {bubbles: true}));
    await shown(text);
    await painted();
    times.push(performance.now() - start);
    forward.push(Number(document.getElementById('playground').dataset.forwardMs));
  }
  return {times, forward};
}"""

KNOB = """async (n) => {
  const knob = document.getElementById('pg-temperature');
  const bars = document.getElementById('pg-bars');
  const times = [];
  for (let i = 0; i < n; i++) {
    const value = String([0.5, 0.75, 1.25, 1.5][i % 4]);
    const start = performance.now();
    knob.value = value;
    knob.dispatchEvent(new Event('input', {bubbles: true}));   // the bars re-render synchronously
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    if (bars.dataset.temperature !== value) throw new Error('the bars did not follow the knob');
    times.push(performance.now() - start);
  }
  return times;
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def added_files(html: Path) -> list[Path]:
    static = html / "_static"
    return [*(static / "onnxruntime-web").iterdir(), *(static / "playground").iterdir(),
            static / "playground.js", static / "playground.css"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=3, help="cold page loads (first prediction)")
    parser.add_argument("--updates", type=int, default=30, help="prompt edits (update time)")
    parser.add_argument("--site", type=Path, default=SITE, help="the built site (default: _build/html)")
    args = parser.parse_args()
    HTML = args.site
    if not (HTML / "playground.html").exists() or not (HTML / "_static" / "playground" / "model.onnx").exists():
        raise SystemExit(f"error: no built playground in {HTML}: run `python3 tasks.py build` first")
    if not CHROMIUM.exists():
        raise SystemExit(f"error: {CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/playground.html"

    first, after_nav, transferred, updates, forward, knobs = [], [], [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        for i in range(args.loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})  # fresh: empty cache
            page = context.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function(READY, timeout=120_000)
            timing = page.evaluate("""() => ({
                load: performance.getEntriesByType('navigation')[0].loadEventEnd,
                first: Number(document.getElementById('playground').dataset.firstPredictionMs),
                bytes: performance.getEntriesByType('resource')
                    .filter(r => /onnxruntime-web|_static\\/playground/.test(r.name))
                    .reduce((n, r) => n + r.encodedBodySize, 0)})""")
            first.append(timing["first"] - timing["load"])
            after_nav.append(timing["first"])
            transferred.append(timing["bytes"])
            if i == args.loads - 1:  # measure updates on the last (warm) page
                result = page.evaluate(UPDATES, [PROMPT_64, args.updates])
                updates, forward = result["times"], result["forward"]
                knobs = page.evaluate(KNOB, 20)
            context.close()
        browser.close()
    httpd.shutdown()

    disk = sum(p.stat().st_size for p in added_files(HTML))
    rows = [
        {"measure": "bytes added to the site", "value": float(disk), "budget": float(BUDGET["bytes"])},
        {"measure": "bytes the page transferred (runtime, model, vocabulary)", "value": float(max(transferred)),
         "budget": float(BUDGET["bytes"])},
        {"measure": "first prediction after the load event, ms (median)", "value": statistics.median(first),
         "budget": BUDGET["first_ms"]},
        {"measure": "first prediction after navigation start, ms (median)", "value": statistics.median(after_nav),
         "budget": float("nan")},
        {"measure": "update, 64-character prompt, ms (median)", "value": statistics.median(updates),
         "budget": BUDGET["update_ms"]},
        {"measure": "update, 64-character prompt, ms (90th percentile)", "value": percentile(updates, 0.9),
         "budget": BUDGET["update_ms"]},
        {"measure": "of which the forward pass, ms (median)", "value": statistics.median(forward), "budget": float("nan")},
        {"measure": "knob moved (no forward pass), ms (median)", "value": statistics.median(knobs),
         "budget": BUDGET["update_ms"]},
    ]
    for row in rows:
        row["within budget"] = "" if row["budget"] != row["budget"] else ("yes" if row["value"] <= row["budget"] else "NO")
    print_table(rows, ["measure", "value", "budget", "within budget"])
    for row in rows:  # JSON has no NaN
        if row["budget"] != row["budget"]:
            row["budget"] = "-"
    write_json("playground", "python benchmarks/bench_playground.py", {
        "note": (f"headless Chromium, onnxruntime-web wasm on one thread, site served from 127.0.0.1; "
                 f"{args.loads} cold loads, {args.updates} prompt edits"),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
