"""Train a TransformerLM on a text: ``python -m tinyformer.train --help``.

The loop: sample random windows, cross-entropy of next-token predictions, AdamW
with warmup + cosine learning rate and global-norm clipping; evaluate on held-out
text every ``eval_interval`` steps; write a CSV log and atomic checkpoints.
Resuming from a checkpoint restores the model, the optimiser and the batch
sampler's random state, so the run continues the same loss trajectory bit for bit
(on CPU, in one process).

A run never loses work:

- every file of a run (``tokenizer.json``, ``checkpoint.pt``, ``log.csv``,
  ``result.json``) is written atomically (temporary file, then rename), and only once
  the configuration, the data sizes and the device have been checked; temporary files
  left by a killed writer are removed when a run starts;
- a checkpoint is written before the first step, every ``checkpoint_interval`` steps
  (default 50) and at the end; SIGINT (Ctrl-C) or SIGTERM finishes the current step,
  writes a checkpoint and stops (a second Ctrl-C stops at once);
- ``--out`` that already holds a run is refused unless ``--resume`` or ``--overwrite`` (a run
  killed before its first checkpoint, which leaves ``tokenizer.json`` alone, is started over);
- a run whose loss or gradient norm stops being finite (NaN, infinity) stops at that step with
  one ``error:`` line naming it and the remedy, exit status 3, its last checkpoint (finite) kept.

Resuming checks what matters: the corpus by the sha256 of its text, the tokenizer
and the model config must be the ones in the checkpoint, and so must every
TrainConfig field except those in :data:`RESUMABLE_FIELDS` (``max_steps``, ``device``,
``compile``, ``checkpoint_interval``, ``eval_interval``, ``grad_accum_steps``,
``dist_timeout``, and ``corpus`` as a path when its content is the same). A refusal
names each differing field with both values.

**A longer run on resume.** The learning rate of every step is a pure function of the
step and the current config: ``cosine_lr_schedule(step, lr, min_lr, warmup_steps,
max_steps)``. Resuming with a larger ``max_steps`` therefore continues on the schedule
of the longer run: steps already taken keep the lr they had (the log records it), and
every later step gets the lr a run planned for the new ``max_steps`` has at that step.
A run that had finished its decay restarts from ``min_lr`` at that higher lr, a warm
restart in the sense of SGDR (Loshchilov & Hutter, 2017); a run stopped half-way joins
the longer cosine without a restart when the two schedules meet. Nothing about the
schedule is stored, so two resumes with the same ``max_steps`` always agree.
``max_steps`` below the steps already taken is refused.

**Several processes or GPUs.** The same command runs under torchrun, one process per CPU
share or GPU (``--device cuda`` gives each process the GPU of its LOCAL_RANK)::

    torchrun --standalone --nproc_per_node=2 -m tinyformer.train --config tinyformer/configs/book.json --out runs/book-2p
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=base-25m -m tinyformer.train --config tinyformer/configs/base_25m_gpu.json --out /shared/runs/base-25m

(the second on each of two machines; ``--out`` must be a folder all of them see).

``--batch-size`` is the global batch of one step; each of N processes trains on its share of
it (batch_size / N windows, in ``--grad-accum-steps`` micro-batches), drawn from one seeded
stream, and DistributedDataParallel averages their gradients, so N processes take the steps
one process takes with the whole batch. Rank 0 writes every file; a checkpoint resumes on
any number of processes (``grad_accum_steps`` and ``dist_timeout`` may change on resume).
A process that dies or hangs stops the others within ``--dist-timeout`` seconds.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from ..checkpoints import CheckpointError, load_checkpoint
from ..distributed import DistributedError
from ..model import preset
from .config import ConfigError, TrainConfig, check_device
from .loop import TrainingDiverged, train
from .run_folder import ResumeError, TrainingInterrupted, check_out_name, prepare_out_dir

__all__ = ["main", "command", "EXIT_DIVERGED"]

EXIT_DIVERGED = 3  # the loss or gradient norm went NaN/infinite: stopped, last finite checkpoint kept


_FLAG_HELP = {
    "batch_size": "the global batch: windows per optimiser step over all processes and accumulation steps "
                  "(each process runs BATCH_SIZE / (processes x GRAD_ACCUM_STEPS) at a time)",
    "grad_accum_steps": "split each process's share of a step's batch into this many micro-batches, run one "
                        "after the other with their gradients added up (the same update, less activation memory)",
    "dist_timeout": "seconds a process waits for the others under torchrun before it stops with an error "
                    "(default 600)",
    "device": "cpu, cuda or mps; under torchrun, cuda gives each process the GPU of its LOCAL_RANK",
    "warmup_steps": "steps of linear learning-rate warmup (default: min(50, MAX_STEPS // 10))",
    "seed": "seeds the weights, the batches and the evaluation windows: an integer in [0, 2**63)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with TrainConfig fields (flags below override it); "
                                         "tinyformer/configs/book.json is the book's run")
    parser.add_argument("--out", default="runs/default", help="output folder (log.csv, checkpoint.pt, ...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT (its saved config, with any flags given here applied)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration and OUT, print them, and exit without training")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also TINYFORMER_DEBUG=1)")
    parser.add_argument("--betas", type=float, nargs=2, metavar=("BETA1", "BETA2"), default=None)
    for name, fld in TrainConfig.__dataclass_fields__.items():
        if name in ("model_overrides", "betas"):
            continue
        flag = "--" + name.replace("_", "-")
        if fld.type in ("bool", bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=_FLAG_HELP.get(name))
        else:
            kind = {"int": int, "float": float}.get(str(fld.type).removesuffix(" | None"), str)
            parser.add_argument(flag, dest=name, type=kind, default=None, help=_FLAG_HELP.get(name))
    return parser


def _refuse_duplicate_keys(path: str):
    def pairs_to_dict(pairs: list) -> dict:
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(f"config file {path} sets {key!r} twice ({seen[key]!r}, then {value!r}): keep one")
            seen[key] = value
        return seen
    return pairs_to_dict


def _read_config_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_refuse_duplicate_keys(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"no config file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of TrainConfig fields, got {type(data).__name__}")
    return data


def _config_from_args(args) -> TrainConfig:
    flags = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if getattr(args, name, None) is not None}
    if args.config:
        base = _read_config_file(args.config)
    elif args.resume and (Path(args.out) / "checkpoint.pt").is_file():
        # Resume without --config: the run's own config, so `--max-steps 640 --resume` just works.
        base = load_checkpoint(Path(args.out) / "checkpoint.pt")["extra"].get("train_config")
        if not isinstance(base, dict):
            raise ResumeError(f"{Path(args.out) / 'checkpoint.pt'} was not written by tinyformer.train (no train_config)")
    else:
        base = {}  # TrainConfig's defaults (a warmup left unset adapts to --max-steps)
    return TrainConfig.from_dict({**base, **flags})


def _run_cli(args) -> int:
    check_out_name(args.out)
    cfg = _config_from_args(args)
    out = Path(args.out)
    if args.check_config:
        prepare_out_dir(out, args.resume, args.overwrite)
        preset(cfg.preset, **cfg.model_overrides)  # the model config builds
        print(json.dumps(cfg.to_dict(), indent=1))
        note = ""
        try:
            check_device(cfg.device)
        except ConfigError as exc:
            note = f" (note: {exc})"
        print(f"config OK: {cfg.preset} model (vocab_size set by the tokenizer), {cfg.max_steps} steps, "
              f"outputs to {out}{note}")
        return 0
    result = train(cfg, out_dir=out, resume=args.resume, overwrite=args.overwrite)
    if result.rank != 0:
        return 0  # rank 0 reports for all
    processes = f", {result.world_size} processes" if result.world_size > 1 else ""
    print(
        f"done: {result.parameters:,} parameters, {result.steps} steps, final val loss "
        f"{result.final_val_loss:.4f} ({result.seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s"
        f"{processes}); "
        f"outputs in {out}"
    )
    return 0


def _interrupted_at_once(signum, frame):
    # Ctrl-C while Python shuts down (torch's exit handlers can take a while): the run's files are
    # written, there is nothing left to save; say so instead of printing a traceback.
    os.write(2, b"interrupted while exiting; the run's files are complete\n")
    os._exit(128 + signum)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside training (which handles it itself): stop like a Ctrl-C, exit 143."""

    signum = signal.SIGTERM


def _terminate(signum, frame):
    raise _Terminated("SIGTERM")


def command(argv=None):
    """``python -m tinyformer.train``: :func:`main`, then exit with its status. SIGTERM before or
    after training stops like a Ctrl-C (one line, exit 143); a Ctrl-C while Python shuts down
    ends at once with one line (exit 130)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    code = main(argv)
    signal.signal(signal.SIGINT, _interrupted_at_once)
    sys.exit(code)


def main(argv=None) -> int:
    """The command line. Returns the exit status: 0 done, 2 bad input (one ``error:`` line,
    no traceback unless ``--debug`` or TINYFORMER_DEBUG=1), 1 when the processes of a
    distributed run cannot meet or one of them died or hung (one ``error:`` line naming the
    rank and what failed), 3 (:data:`EXIT_DIVERGED`) when the loss or the gradient norm stopped
    being finite (one ``error:`` line naming the step and the remedy; the last finite checkpoint
    is kept), 128 + signal number when SIGINT or SIGTERM stopped training (after saving a
    checkpoint), 130 for a Ctrl-C at any other moment (one line)."""
    if (threading.current_thread() is threading.main_thread()
            and getattr(signal.getsignal(signal.SIGINT), "tinyformer_startup", False)):
        # python -m tinyformer.train installed a start-up handler while torch was imported
        # (tinyformer/__init__.py): from here on a Ctrl-C is a KeyboardInterrupt, handled below.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    out = "OUT"
    try:
        args = _parser().parse_args(argv)  # argparse itself exits 2 with an `error:` line
        out = args.out
        debug = args.debug or os.environ.get("TINYFORMER_DEBUG", "") not in ("", "0")
        return _main(args, debug)
    except KeyboardInterrupt as exc:  # before or after training (startup, argument parsing, the report)
        detail = f" ({exc})" if str(exc) else ""
        print(f"interrupted{detail}; the last checkpoint in {out} (if any) is intact", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)


def _main(args, debug: bool) -> int:
    previous = os.environ.get("TINYFORMER_DEBUG")
    if args.debug:  # train() reads it: torch.compile's own log messages show with --debug
        os.environ["TINYFORMER_DEBUG"] = "1"
    try:
        return _run_cli(args)
    except TrainingDiverged as exc:
        if debug:
            raise
        if exc.rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the checkpoint is saved: a late second Ctrl-C changes nothing
        if exc.rank == 0:  # every rank stopped after the same step; one report
            again = ("python -m tinyformer.train" if exc.world_size == 1 else
                     f"torchrun ... -m tinyformer.train (on {exc.world_size} or any number of processes)")
            print(f"interrupted: {exc}; continue with: {again} --out {args.out} --resume", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"interrupted{detail}; the last checkpoint in {args.out} (if any) is intact", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except (ValueError, TypeError, OSError, CheckpointError, DistributedError) as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1 if isinstance(exc, DistributedError) else 2
    finally:
        if args.debug:
            if previous is None:
                os.environ.pop("TINYFORMER_DEBUG", None)
            else:
                os.environ["TINYFORMER_DEBUG"] = previous
