"""One process against two (torchrun + DDP, gloo) on this machine's CPU cores: the same training
run, the same global batch, the same examples.

    python benchmarks/bench_distributed.py              # book-small on the King James Bible, batch 32
    python benchmarks/bench_distributed.py --steps 2 --repeats 1 --batch 4   # a smoke test

Three set-ups train the book's model (``BOOK_RUN``'s preset and corpus) for ``--steps`` steps
through the real command line, ``python -m tinyformer.train`` (in a fresh process each):

- 1 process, 1 thread (``OMP_NUM_THREADS=1``): one core;
- 1 process, 2 threads: PyTorch's own intra-op parallelism over two cores;
- 2 processes x 1 thread: ``torchrun --standalone --nproc_per_node=2``, each rank half the batch,
  DistributedDataParallel averaging gradients over gloo (TCP on 127.0.0.1).

Tokens/s is the run's own figure (global tokens over training seconds, from ``result.json``);
each set-up runs ``--repeats`` times, interleaved, and the best run counts (the one least
disturbed by anything else on the machine). The time one all-reduce of the model's gradients
takes between two processes is measured separately, so its share of a step can be read off.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import ROOT, print_table, write_json

import tinyformer as tf
from tinyformer.book.runs import BOOK_RUN

SETUPS = {  # name: (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes x 1 thread (torchrun, DDP)": (2, 1),
}


def train_once(processes: int, threads: int, config: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, "-m", "tinyformer.train", "--config", str(config), "--out", str(out), "--overwrite"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    if result.get("world_size", 1) != processes:  # the run really was split over the processes
        raise RuntimeError(f"{' '.join(command)} trained on {result.get('world_size', 1)} process(es), not {processes}")
    return result


def _all_reduce_worker(rank: int, port: int, numel: int, repeats: int, result: str) -> None:
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))
    grads = torch.randn(numel)
    for _ in range(3):  # warm-up: connections, buffers
        dist.all_reduce(grads)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grads)
        times.append(time.perf_counter() - start)
    if rank == 0:
        Path(result).write_text(json.dumps(times))
    dist.destroy_process_group()


def all_reduce_ms(numel: int, repeats: int = 20) -> float:
    """Median milliseconds of one gloo all-reduce of ``numel`` float32 values between 2 processes."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        result = str(Path(folder) / "times.json")
        mp.start_processes(_all_reduce_worker, args=(port, numel, repeats, result), nprocs=2, start_method="spawn")
        return 1000 * statistics.median(json.loads(Path(result).read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=BOOK_RUN.batch_size, help="the global batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    run = {**BOOK_RUN.to_dict(), "batch_size": args.batch, "max_steps": args.steps,
           "warmup_steps": min(BOOK_RUN.warmup_steps, args.steps), "eval_interval": args.steps, "eval_batches": 1,
           "checkpoint_interval": 0}
    results = {name: [] for name in SETUPS}
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.json"
        config.write_text(json.dumps(run))
        for repeat in range(args.repeats):
            for name, (processes, threads) in SETUPS.items():
                result = train_once(processes, threads, config, Path(folder) / "run")
                results[name].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {name}: {result['tokens_per_second']:,.0f} tokens/s")
    parameters = results[next(iter(SETUPS))][0]["parameters"]
    reduce_ms = all_reduce_ms(parameters)
    rows = []
    for name, (processes, threads) in SETUPS.items():
        best = max(results[name], key=lambda r: r["tokens_per_second"])
        rows.append({"setup": name, "processes": processes, "threads per process": threads,
                     "tokens/s": best["tokens_per_second"], "ms/step": 1000 * best["seconds"] / best["steps"],
                     "final val loss": best["final_val_loss"],
                     "all runs tokens/s": [r["tokens_per_second"] for r in results[name]]})
    base = rows[0]["tokens/s"]
    for r in rows:
        r["speed vs 1 process, 1 thread"] = r["tokens/s"] / base
    print(f"\nbook-small ({parameters:,} parameters), global batch {args.batch} x {tf.preset(BOOK_RUN.preset).context_length} "
          f"tokens, {args.steps} steps, best of {args.repeats}\n")
    print_table(rows, ["setup", "tokens/s", "ms/step", "speed vs 1 process, 1 thread", "final val loss"])
    print(f"\none gloo all-reduce of the {parameters:,} gradients ({4 * parameters / 2**20:.1f} MiB) between 2 "
          f"processes: {reduce_ms:.1f} ms (median of 20)")
    command = "python benchmarks/bench_distributed.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items())
    write_json("distributed", command, {
        "train_config": run, "parameters": parameters, "cores": os.cpu_count(),
        "all_reduce_ms": reduce_ms, "gradient_mib": 4 * parameters / 2**20, "rows": rows,
        "note": f"best of {args.repeats} interleaved runs per set-up; tokens/s counts the global batch",
    })


if __name__ == "__main__":
    main()
