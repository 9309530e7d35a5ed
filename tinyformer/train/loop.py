"""The training loop: :func:`train` runs (or resumes) a run and returns a :class:`RunResult`.

One step: draw the global batch's window starts, run this process's micro-batches (forward,
cross-entropy, backward), clip the global gradient norm, take an AdamW step at the step's
learning rate (warmup + cosine), and share the loss. Every ``eval_interval`` steps the model is
evaluated on held-out windows; every ``checkpoint_interval`` steps, at the end and on SIGINT or
SIGTERM a checkpoint is written. Resuming restores the model, the optimiser and the batch
sampler's random state, so the run continues the same loss trajectory bit for bit (on CPU, in
one process).

The learning rate of every step is a pure function of the step and the current config, so a
resume with a larger ``max_steps`` continues on the longer run's schedule (the command's help,
``python -m tinyformer.train --help``, says what that means for a finished run).

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..batches import random_starts, windows
from ..checkpoints import save_checkpoint
from ..data import Corpus
from ..distributed import World, process_group, sync_gradients, world_from_env, wrap_model
from ..losses import cross_entropy
from ..model import TransformerLM, count_parameters
from ..optim import clip_grad_norm, cosine_lr_schedule
from .config import ConfigError, TrainConfig, check_device
from .prepare import Prepared, prepare_run
from .run_folder import StopOnSignal, TrainingInterrupted, check_out_name, start_run_folder, write_log, write_result

__all__ = ["RunResult", "train", "evaluate", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm of a step was not finite (NaN or infinity): the run stopped
    before that step changed the weights, and nothing of it was saved; ``checkpoint`` (written
    at ``saved_step``) is the last finite state of the run."""

    def __init__(self, step: int, what: str, cfg: TrainConfig, checkpoint: Path | None, saved_step: int | None,
                 rank: int = 0):
        self.step, self.what, self.checkpoint, self.saved_step, self.rank = step, what, checkpoint, saved_step, rank
        kept = (f"the last checkpoint, {checkpoint} (step {saved_step}), is kept" if checkpoint is not None
                and saved_step is not None else "nothing was saved")
        super().__init__(
            f"training diverged at step {step}: {what}; {kept}. Lower --lr (now {cfg.lr:g}) or --grad-clip (now "
            f"{cfg.grad_clip:g}), or lengthen --warmup-steps (now {cfg.warmup_steps}), and start again (--overwrite)")


@contextmanager
def _quiet_compile(enabled: bool):
    """torch.compile's own log messages (graph breaks, recompilations; on CPU a flood of them) are
    for whoever debugs the compiler: kept off the console unless --debug (TINYFORMER_DEBUG=1) or
    TORCH_LOGS asks for them. Errors still show."""
    if not enabled or os.environ.get("TINYFORMER_DEBUG", "") not in ("", "0") or os.environ.get("TORCH_LOGS"):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch._dynamo", "torch._inductor", "torch.fx.experimental")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch\._dynamo.*|torch\._inductor.*")
            warnings.filterwarnings("ignore", message=r".*[Gg]raph break.*")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass
class RunResult:
    """What a run gives back: the trained model with its tokenizer and data, the log, and the totals.

    ``log`` holds lists: ``step``, ``lr``, ``train_loss`` (one entry per step) and ``val_step``,
    ``val_loss`` (one per evaluation). ``seconds`` and ``tokens_per_second`` cover every session of
    a resumed run. ``rank`` and ``world_size`` say which process of a distributed run this is.
    """

    model: TransformerLM
    tokenizer: object
    corpus: Corpus
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    log: dict
    config: TrainConfig
    steps: int
    seconds: float
    tokens_per_second: float
    parameters: int
    rank: int = 0
    world_size: int = 1

    @property
    def final_val_loss(self) -> float:
        """The last evaluation's loss (NaN when there was none)."""
        return self.log["val_loss"][-1] if self.log["val_loss"] else float("nan")


@torch.no_grad()
def evaluate(model, tokens, cfg: TrainConfig, step: int, world: World = World(), device: str | None = None) -> float:
    """Mean loss on ``eval_batches`` windows drawn by a generator seeded from the step,
    so evaluation never disturbs (or depends on) the training sampler.

    Each batch is evaluated in the training step's pieces: on several ranks each takes its rows
    (micro-batch by micro-batch) and the ranks average their means, which is the mean one
    process computes over the same windows (the pieces are equal in size)."""
    device = device or cfg.device
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003 + step)
    context = model.config.context_length
    pieces = world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)
    losses = []
    for _ in range(cfg.eval_batches):
        starts = random_starts(len(tokens), cfg.batch_size, context, generator=g)
        parts = [cross_entropy(model(x).float(), y).item()
                 for x, y in (windows(tokens, starts[rows], context, device) for rows in pieces)]
        losses.append(sum(parts) / len(parts))
    losses = [loss / world.size for loss in world.sum(losses, f"evaluation at step {step}")]
    model.train()
    return float(np.mean(losses))


def _autocast(cfg: TrainConfig):
    if cfg.dtype == "bfloat16":
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data=None,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Run (or resume) training; return the model, tokenizer, data, log and losses (:class:`RunResult`).

    ``out_dir`` receives ``log.csv``, ``checkpoint.pt``, ``tokenizer.json`` and
    ``result.json``; if it already holds a run, pass ``resume=True`` to continue it or
    ``overwrite=True`` to replace it. ``data``: the tuple :func:`prepare_data` returns, to
    skip preparing it again. ``stop_after`` ends the run early at that step (as if
    interrupted) after writing a checkpoint: used to test resuming.

    Started by torchrun (``WORLD_SIZE`` > 1 in the environment), every process calls this with
    the same arguments: each trains on its share of every global batch (see
    :mod:`tinyformer.distributed`), rank 0 alone writes the files, and all return the same log.

    Raises ConfigError / ResumeError (both ValueError) for a configuration, folder or data
    that cannot be used (a batch that cannot fit in memory included), before anything is written;
    TrainingInterrupted (a KeyboardInterrupt) after saving a checkpoint when SIGINT or SIGTERM
    arrives; TrainingDiverged when a step's loss or gradient norm is not finite (nothing of that
    step is saved: the last checkpoint stays the last finite one);
    DistributedError when the processes cannot meet, or one of them dies or hangs for longer
    than ``cfg.dist_timeout`` seconds.
    """
    cfg.validate()
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"stop_after must be an integer >= 1 or None, got {stop_after!r}")
    check_out_name(out_dir)
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ConfigError("resume=True needs the out_dir of the run to continue")
    # Checked before the processes meet, identically on every rank: a bad split fails them all at once.
    world = world_from_env(timeout=cfg.dist_timeout)
    try:
        world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)
        device = world.device(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"TrainConfig.batch_size/device do not fit {world.size} process(es): {exc}") from None
    if world.distributed:
        check_device(device)
    with process_group(world, device):
        # Every rank checks; if any fails, all stop with its error, before a file is written.
        prepared = world.everywhere(
            lambda: prepare_run(cfg, device, out, resume, overwrite, data, progress and world.is_main, world.size),
            "checking the configuration, the output folder and the data")
        return _Run(cfg, world, device, out, prepared).run(resume, progress, stop_after)


class _Run:
    """One run in progress on this process: the model, optimiser, batch sampler and log (restored
    on resume), and the totals a checkpoint records. Rank 0 writes the files."""

    def __init__(self, cfg: TrainConfig, world: World, device: str, out: Path | None, prepared: Prepared):
        self.cfg, self.world, self.device, self.out, self.p = cfg, world, device, out, prepared
        self.model, self.optimizer, self.sampler, self.log = prepared.model, prepared.optimizer, prepared.sampler, prepared.log
        self.context = prepared.model_config.context_length
        self.step = prepared.start_step  # steps completed
        self.tokens = prepared.tokens_before  # tokens trained on, over all sessions
        # Training time over all sessions, up to the end of the last completed step (so the checkpoint and
        # result.json agree, and a resume that trains nothing adds nothing).
        self.seconds = prepared.seconds_before
        self.saved_step: int | None = None  # the step of the checkpoint on disk, once there is one

    def write_checkpoint(self) -> None:
        """checkpoint.pt and log.csv of the steps completed so far (rank 0; nothing without a folder)."""
        if self.out is None:
            return
        p = self.p
        save_checkpoint(
            self.out / "checkpoint.pt", self.model, self.optimizer, self.step, config=p.model_config.to_dict(),
            extra={"train_config": self.cfg.to_dict(), "sampler_state": self.sampler.get_state(), "log": self.log,
                   "corpus_sha256": p.corpus.sha256, "tokenizer": p.tokenizer_text, "seconds": self.seconds,
                   "tokens_seen": self.tokens},
        )
        write_log(self.out, self.log)

    def _start_files(self, resume: bool) -> None:
        if self.out is None:
            return
        start_run_folder(self.out, resume, finished=self.step >= self.cfg.max_steps, tokenizer_text=self.p.tokenizer_text)
        if not resume:
            self.write_checkpoint()  # step 0: from now on the run can always be resumed
        else:
            write_log(self.out, self.log)  # derived from the checkpoint: a damaged or lagging copy is repaired

    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        checkpoint = self.out / "checkpoint.pt" if self.out is not None and self.saved_step is not None else None
        return TrainingDiverged(step, what, self.cfg, checkpoint, self.saved_step, self.world.rank)

    def _save(self) -> None:
        # Weights are the same on every rank: all refuse together, and no NaN ever replaces a finite checkpoint.
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise self._diverged(self.step, "the weights hold NaN or infinite values")
        self.world.on_main(self.write_checkpoint, f"writing the checkpoint of step {self.step}")
        self.saved_step = self.step

    def _train_step(self, step_fn, ddp_model, micro_batches, stop: StopOnSignal) -> tuple[float, int | None]:
        """Step ``self.step + 1`` on this rank's rows of the global batch; returns the batch's loss
        over all ranks, and the signal that stops the run after this step (if any rank got one)."""
        cfg, world, done = self.cfg, self.world, self.step + 1
        lr = cosine_lr_schedule(self.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # The global batch: the same draw on every rank, whatever their number; each trains on its rows.
        starts = random_starts(len(self.p.train_tokens), cfg.batch_size, self.context, generator=self.sampler)
        self.optimizer.zero_grad(set_to_none=True)
        for i, rows in enumerate(micro_batches):
            x, y = windows(self.p.train_tokens, starts[rows], self.context, self.device)
            with sync_gradients(ddp_model, sync=i == len(micro_batches) - 1):
                with _autocast(cfg):
                    loss = cross_entropy(step_fn(x).float(), y)
                # Each micro-batch's mean loss / accum_steps: the gradients add up to the whole batch's.
                with world.collective(f"step {done} (averaging gradients)"):
                    (loss / cfg.grad_accum_steps).backward()
            summed = loss.detach() if i == 0 else summed + loss.detach()
        # The norm of the averaged gradients is the same on every rank, so all stop at the same step,
        # before a non-finite update reaches the weights.
        norm = float(clip_grad_norm(self.model.parameters(), cfg.grad_clip))
        if not math.isfinite(norm):
            raise self._diverged(done, f"the gradient norm is {norm} (the loss {summed.item() / cfg.grad_accum_steps:g})")
        self.optimizer.step()
        self.tokens += cfg.batch_size * self.context
        # One meeting per step: the batch's loss over all ranks, and whether any rank was told to stop
        # (all ranks must stop after the same step, or the others would wait for it forever).
        loss_sum, n_sigint, n_sigterm = world.sum(
            [summed.item() / cfg.grad_accum_steps, float(stop.signum == signal.SIGINT),
             float(stop.signum == signal.SIGTERM)], f"step {done} (sharing the loss)")
        signum = stop.signum or (signal.SIGINT if n_sigint else signal.SIGTERM if n_sigterm else None)
        if not math.isfinite(loss_sum):
            raise self._diverged(done, f"the loss is {loss_sum / world.size}")
        self.log["step"].append(done)
        self.log["lr"].append(lr)
        self.log["train_loss"].append(loss_sum / world.size)
        return loss_sum / world.size, signum

    def run(self, resume: bool, progress: bool, stop_after: int | None) -> RunResult:
        cfg, world, log, start_step = self.cfg, self.world, self.log, self.step
        # The handlers go in before the first file is written (a signal while the first checkpoint is
        # written lets it finish, then stops) and before the progress bar prints its first count (a
        # signal aimed at that count, which a resumed run prints at once, still stops after one clean step).
        with StopOnSignal(second_stops=not world.distributed) as stop, _quiet_compile(cfg.compile):
            world.on_main(lambda: self._start_files(resume), "writing the first files of the run")
            self.saved_step = self.step if self.out is not None else None
            if stop.signum and not world.distributed:  # (several processes agree on stopping after the first step)
                raise TrainingInterrupted(self.step, stop.signum,
                                          self.out / "checkpoint.pt" if self.out is not None else None)
            ddp_model = wrap_model(self.model, world, self.device)  # the model itself in one process
            step_fn = torch.compile(ddp_model) if cfg.compile else ddp_model
            micro_batches = world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)  # this rank's rows of each batch
            bar = None
            if progress and world.is_main and start_step < cfg.max_steps:
                from tqdm.auto import tqdm

                bar = tqdm(total=cfg.max_steps, initial=start_step, desc="training", unit="step")
            try:
                self._steps(step_fn, ddp_model, micro_batches, stop, bar, stop_after)
            finally:
                if bar is not None:
                    bar.close()  # before any message: an error line must not follow the bar on its line
        return self._result()

    def _steps(self, step_fn, ddp_model, micro_batches, stop: StopOnSignal, bar, stop_after: int | None) -> None:
        cfg, world, log = self.cfg, self.world, self.log
        self.model.train()
        last_saved = self.step
        t0 = time.perf_counter()
        while self.step < cfg.max_steps:
            train_loss, signum = self._train_step(step_fn, ddp_model, micro_batches, stop)
            self.step = done = self.step + 1
            if done % cfg.eval_interval == 0 or done == cfg.max_steps:
                log["val_step"].append(done)
                log["val_loss"].append(evaluate(self.model, self.p.val_tokens, cfg, done, world=world,
                                                device=self.device))
                if bar is not None:
                    bar.set_postfix(train=f"{train_loss:.3f}", val=f"{log['val_loss'][-1]:.3f}")
            self.seconds = self.p.seconds_before + time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
            if (cfg.checkpoint_interval and done % cfg.checkpoint_interval == 0) or signum or done == stop_after:
                self._save()
                last_saved = done
            if signum:
                raise TrainingInterrupted(done, signum, self.out / "checkpoint.pt" if self.out is not None else None,
                                          world.rank, world.size)
            if done == stop_after:
                break
        if self.step != last_saved or (self.out is not None and not (self.out / "checkpoint.pt").exists()):
            self._save()

    def _result(self) -> RunResult:
        p, world = self.p, self.world
        result = RunResult(
            model=self.model, tokenizer=p.tokenizer, corpus=p.corpus, train_tokens=p.train_tokens,
            val_tokens=p.val_tokens, log=self.log, config=self.cfg, steps=self.step, seconds=self.seconds,
            tokens_per_second=self.tokens / self.seconds if self.seconds > 0 else float("nan"),
            parameters=count_parameters(self.model), rank=world.rank, world_size=world.size,
        )
        if self.out is not None and self.step >= self.cfg.max_steps:
            summary = {"seconds": result.seconds, "tokens_per_second": result.tokens_per_second,
                       "parameters": result.parameters, "final_val_loss": result.final_val_loss,
                       "steps": result.steps, "world_size": world.size}
            world.on_main(lambda: write_result(self.out, summary, self.log, self.cfg), "writing result.json")
        return result
