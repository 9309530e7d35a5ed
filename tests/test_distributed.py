"""Training on several processes (torch.distributed, gloo, CPU) against one process.

The reference for N processes is one process fed the same examples: ``batch_size`` is the
global batch, drawn from one seeded stream, and each rank trains on its rows of it. Ranks are
real processes (``multiprocessing`` with the spawn method, like torchrun's workers) meeting on
127.0.0.1; every wait has a timeout, so a broken collective fails the test instead of hanging it.
The single-process path is checked bit for bit against the plain training loop written out here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyformer.train.loop as loop
import tinyformer.train.run_folder as run_folder
from tinyformer.distributed import DistributedError, World, world_from_env
from tinyformer.model import TransformerLM, preset
from tinyformer.train import ConfigError, TrainConfig, TrainingInterrupted, main, prepare_data, train
from tinyformer.batches import get_batch, random_starts
from tinyformer.checkpoints import load_checkpoint
from tinyformer.losses import cross_entropy
from tinyformer.optim import clip_grad_norm, cosine_lr_schedule, make_optimizer

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void. " * 60)
TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "context_length": 16}
RANK_TIMEOUT = 120  # seconds the test waits for a group of rank processes before killing them


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def config(corpus: str, **changes) -> TrainConfig:
    # dist_timeout 30: a broken meeting point fails within 30 s (the normal jobs take a few seconds).
    return TrainConfig.from_dict({
        "corpus": corpus, "batch_size": 8, "max_steps": 8, "warmup_steps": 2, "eval_interval": 4, "eval_batches": 2,
        "model_overrides": TINY, "dist_timeout": 30.0, **changes})


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# ---------------------------------------------------------------- running ranks as processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, size: int, port: int, job, kwargs: dict, result: Path) -> None:
    """A spawned process: the launch variables torchrun would set, then ``job``; its return value
    (or the error it raised) goes to ``result``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        outcome = {"value": job(rank, **kwargs)}
    except BaseException as exc:  # reported to the test, which asserts on it
        outcome = {"error": type(exc).__name__, "message": str(exc), "step": getattr(exc, "step", None)}
    torch.save(outcome, result)


def run_ranks(job, folder: Path, size: int = 2, wait_for: tuple[int, ...] | None = None, **kwargs) -> list[dict]:
    """Start ``size`` rank processes running ``job(rank, **kwargs)`` and return each one's outcome.
    Ranks not in ``wait_for`` are killed once those have finished (a rank made to hang)."""
    folder.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    port = free_port()
    results = [folder / f"rank{r}.pt" for r in range(size)]
    procs = [context.Process(target=_rank_main, args=(r, size, port, job, kwargs, results[r])) for r in range(size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + RANK_TIMEOUT
    try:
        for r in range(size) if wait_for is None else wait_for:
            procs[r].join(max(0.0, deadline - time.monotonic()))
            assert not procs[r].is_alive(), f"rank {r} still running after {RANK_TIMEOUT} s: a hang"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
    return [torch.load(path, weights_only=False) if path.exists() else {"error": "no result", "exitcode": p.exitcode}
            for path, p in zip(results, procs)]


def _record_batches(patch=setattr) -> list[list[int]]:
    """Record the window starts of every batch piece this process reads (training and evaluation).
    ``patch``: how to replace the function (a MonkeyPatch's setattr, to restore it afterwards)."""
    calls, original = [], loop.windows

    def recording(tokens, starts, context_length, device="cpu"):
        calls.append(starts.tolist())
        return original(tokens, starts, context_length, device)

    patch(loop, "windows", recording)
    return calls


def _record_grad_norms(patch=setattr) -> list[float]:
    """Record each step's gradient norm before clipping. AdamW hardly notices a gradient scaled by
    a constant (it divides by the gradient's own size), so the weights alone could hide a wrong
    loss scale in accumulation or averaging; the norm cannot."""
    norms, original = [], loop.clip_grad_norm

    def recording(parameters, max_norm):
        norm = original(parameters, max_norm)
        norms.append(norm.item())
        return norm

    patch(loop, "clip_grad_norm", recording)
    return norms


def _record_writes() -> list[str]:
    writes = []
    for module, name in ((loop, "save_checkpoint"), (loop, "write_log"), (run_folder, "atomic_write_bytes")):
        original = getattr(module, name)

        def recording(*args, _original=original, _name=name, **kwargs):
            writes.append(_name)
            return _original(*args, **kwargs)

        setattr(module, name, recording)
    return writes


def _job_train(rank: int, cfg: dict, out: str, resume: bool = False, stop_after: int | None = None,
               ctrl_c_rank_1_at: int | None = None) -> dict:
    batches, writes, norms = _record_batches(), _record_writes(), _record_grad_norms()
    if ctrl_c_rank_1_at is not None and rank == 1:
        schedule = loop.cosine_lr_schedule

        def ctrl_c_at_step(it, *args):  # called at the start of step it + 1
            if it + 1 == ctrl_c_rank_1_at:
                # Twice, as under torchrun: from the terminal, and forwarded by the launcher.
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return schedule(it, *args)

        loop.cosine_lr_schedule = ctrl_c_at_step
    try:
        result = train(TrainConfig.from_dict(cfg), out_dir=out, resume=resume, progress=False, stop_after=stop_after)
    except TrainingInterrupted as exc:
        return {"interrupted_at": exc.step, "signum": exc.signum, "batches": batches, "writes": writes, "norms": norms}
    return {"batches": batches, "writes": writes, "norms": norms, "log": result.log,
            "state": {k: v.clone() for k, v in result.model.state_dict().items()}}


def _job_fail_rank_1(rank: int, cfg: dict, out: str, how: str, at_step: int) -> dict:
    """Rank 1 dies (os._exit) or hangs (sleeps) at the start of ``at_step``; rank 0 reports how
    long it took from the start of that step to its error."""
    schedule = loop.cosine_lr_schedule
    started = {}

    def failing(it, *args):
        if it + 1 == at_step:
            started["at"] = time.monotonic()
            if rank == 1 and how == "dies":
                os._exit(3)
            if rank == 1 and how == "hangs":
                time.sleep(RANK_TIMEOUT)
        return schedule(it, *args)

    loop.cosine_lr_schedule = failing
    try:
        train(TrainConfig.from_dict(cfg), out_dir=out, progress=False)
    except DistributedError as exc:
        return {"message": str(exc), "seconds": time.monotonic() - started["at"]}
    return {"message": "no error"}


# ---------------------------------------------------------------- one process: exactly as before
def plain_loop(cfg: TrainConfig, data) -> tuple[TransformerLM, list[float], list[float]]:
    """The single-process loop as it was before distributed training: one get_batch per step."""
    _, tokenizer, train_tokens, val_tokens = data
    model_config = preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": tokenizer.vocab_size})
    T = model_config.context_length
    torch.manual_seed(cfg.seed)
    model = TransformerLM(model_config)
    optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sampler = torch.Generator().manual_seed(cfg.seed)
    losses, val_losses = [], []
    for step in range(cfg.max_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr_schedule(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        x, y = get_batch(train_tokens, cfg.batch_size, T, generator=sampler)
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % cfg.eval_interval == 0 or step + 1 == cfg.max_steps:
            g = torch.Generator().manual_seed(cfg.seed + 1_000_003 + step + 1)
            with torch.no_grad():
                val_losses.append(float(np.mean([cross_entropy(model(x), y).item() for x, y in
                                                 (get_batch(val_tokens, cfg.batch_size, T, generator=g)
                                                  for _ in range(cfg.eval_batches))])))
    return model, losses, val_losses


@pytest.mark.parametrize("launched_by_torchrun_with_one_process", [False, True])
def test_one_process_trains_bit_for_bit_as_the_plain_loop(corpus, monkeypatch, launched_by_torchrun_with_one_process):
    if launched_by_torchrun_with_one_process:  # torchrun --nproc_per_node=1 sets these: still one process
        monkeypatch.setenv("WORLD_SIZE", "1")
        monkeypatch.setenv("RANK", "0")
    cfg = config(corpus)
    data = prepare_data(cfg)
    expected_model, expected_losses, expected_val = plain_loop(cfg, data)
    result = train(cfg, progress=False, data=data)
    assert result.log["train_loss"] == expected_losses
    assert result.log["val_loss"] == expected_val
    for (name, a), b in zip(expected_model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_gradient_accumulation_takes_the_large_batch_step(corpus, monkeypatch):
    cfg = config(corpus)
    data = prepare_data(cfg)
    norms = _record_grad_norms(monkeypatch.setattr)
    large = train(cfg, progress=False, data=data)
    large_norms = norms[:]
    del norms[:]
    batches = _record_batches(monkeypatch.setattr)
    accumulated = train(config(corpus, grad_accum_steps=4), progress=False, data=data)
    assert norms == pytest.approx(large_norms, rel=1e-5)  # the same gradient, not 4x (or 1/4) of it
    assert max_difference(large.model.state_dict(), accumulated.model.state_dict()) < 1e-5
    assert accumulated.log["train_loss"] == pytest.approx(large.log["train_loss"], abs=1e-5)
    assert accumulated.log["val_loss"] == pytest.approx(large.log["val_loss"], abs=1e-5)
    assert {len(b) for b in batches} == {2}  # 4 micro-batches of 2 windows ...
    first = random_starts(len(data[2]), 8, TINY["context_length"], torch.Generator().manual_seed(cfg.seed))
    assert batches[0] + batches[1] + batches[2] + batches[3] == first.tolist()  # ... together step 1's batch


def test_gradient_accumulation_must_divide_the_batch():
    with pytest.raises(ConfigError, match=r"TrainConfig.grad_accum_steps must be a divisor of batch_size \(6\).*got 4"):
        TrainConfig(batch_size=6, grad_accum_steps=4)


@pytest.mark.parametrize("size, accum", [(1, 1), (1, 3), (2, 1), (2, 2), (4, 2), (3, 1)])
def test_the_ranks_micro_batches_cover_every_row_once_in_order(size, accum):
    batch = size * accum * 2
    rows = [i for rank in range(size) for part in World(rank, size).micro_batches(batch, accum)
            for i in range(batch)[part]]
    assert rows == list(range(batch))
    assert all(s.stop - s.start == 2 for r in range(size) for s in World(r, size).micro_batches(batch, accum))


# ---------------------------------------------------------------- two processes against one
@pytest.fixture(scope="module")
def chain(corpus, tmp_path_factory):
    """One run handed between 1 and 2 processes: 2 ranks take steps 1-4, one process 5-6, 2 ranks
    with accumulation 7 (stopped there by a Ctrl-C to rank 1 only), one process 8; and the
    reference: one process all the way, stopped and resumed at step 4."""
    folder = tmp_path_factory.mktemp("chain")
    cfg = config(corpus)
    data = prepare_data(cfg)
    reference = {}
    with pytest.MonkeyPatch.context() as patch:
        calls, norms = _record_batches(patch.setattr), _record_grad_norms(patch.setattr)
        train(cfg, out_dir=folder / "single", progress=False, data=data, stop_after=4)
        reference["calls_1_to_4"] = list(calls)
        reference["checkpoint_4"] = load_checkpoint(folder / "single" / "checkpoint.pt")
        reference["final"] = train(cfg, out_dir=folder / "single", progress=False, data=data, resume=True)
        reference["calls_5_to_8"] = calls[len(reference["calls_1_to_4"]):]
        reference["norms"] = norms[:]
        del calls[:], norms[:]
        run = folder / "run"
        two = run_ranks(_job_train, folder / "two", cfg=cfg.to_dict(), out=str(run), stop_after=4)
        checkpoint_4 = load_checkpoint(run / "checkpoint.pt")
        one = train(cfg, out_dir=run, progress=False, data=data, resume=True, stop_after=6)
        calls_5_6, norms_5_6 = list(calls), list(norms)
        two_accum = run_ranks(_job_train, folder / "two_accum", cfg=config(corpus, grad_accum_steps=2).to_dict(),
                              out=str(run), resume=True, ctrl_c_rank_1_at=7)
        checkpoint_7 = load_checkpoint(run / "checkpoint.pt")
        final = train(cfg, out_dir=run, progress=False, data=data, resume=True)
    return dict(reference=reference, two=two, checkpoint_4=checkpoint_4, one=one, calls_5_6=calls_5_6, norms_5_6=norms_5_6,
                two_accum=two_accum, checkpoint_7=checkpoint_7, final=final)


def per_batch(rank_calls: list[list[list[int]]], accum: int) -> list[list[int]]:
    """Join the ranks' pieces of each batch (rank 0's micro-batches first) into the whole batch."""
    n = len(rank_calls[0]) // accum
    return [[s for calls in rank_calls for piece in calls[i * accum:(i + 1) * accum] for s in piece] for i in range(n)]


def test_two_processes_take_the_steps_of_one_process_with_the_whole_batch(chain):
    two, reference = chain["two"], chain["reference"]
    assert all("value" in r for r in two), two
    rank0, rank1 = (r["value"] for r in two)
    # Each rank trained on its own half of every batch; together, the batches of one process.
    assert {len(b) for b in rank0["batches"] + rank1["batches"]} == {4}
    assert per_batch([rank0["batches"], rank1["batches"]], accum=1) == reference["calls_1_to_4"]
    assert max_difference(chain["checkpoint_4"]["model"], reference["checkpoint_4"]["model"]) < 1e-5
    assert rank0["norms"] == rank1["norms"] == pytest.approx(reference["norms"][:4], rel=1e-5)  # averaged, not summed
    assert max_difference(rank0["state"], rank1["state"]) == 0  # DDP keeps the replicas identical
    expected = reference["checkpoint_4"]["extra"]["log"]
    assert rank0["log"]["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-5)
    assert rank0["log"]["val_loss"] == pytest.approx(expected["val_loss"], abs=1e-5)  # averaged over the ranks
    assert rank1["log"] == rank0["log"]


def test_only_rank_0_writes_the_run_files(chain):
    for job in ("two", "two_accum"):
        rank0, rank1 = (r["value"] for r in chain[job])
        assert rank1["writes"] == [] and "save_checkpoint" in rank0["writes"], job


def test_a_two_process_checkpoint_continues_in_one_process_and_back(chain):
    reference = chain["reference"]
    # 2 ranks (steps 1-4), one process (5-6), 2 ranks with accumulation 2 (7), one process (8): the
    # examples and the weights of one uninterrupted process.
    assert chain["one"].log["step"] == list(range(1, 7))
    rank0, rank1 = (r["value"] for r in chain["two_accum"])
    assert {len(b) for b in rank0["batches"]} == {2}  # 2 micro-batches of 2 windows per rank
    steps_5_to_7 = chain["calls_5_6"][:2] + per_batch([rank0["batches"], rank1["batches"]], accum=2)
    assert steps_5_to_7 == reference["calls_5_to_8"][:3]
    assert chain["norms_5_6"] + rank0["norms"] == pytest.approx(reference["norms"][4:7], rel=1e-5)
    final = chain["final"]
    assert final.log["step"] == list(range(1, 9))
    assert max_difference(final.model.state_dict(), reference["final"].model.state_dict()) < 1e-5
    assert final.log["train_loss"] == pytest.approx(reference["final"].log["train_loss"], abs=1e-5)
    assert final.log["val_loss"] == pytest.approx(reference["final"].log["val_loss"], abs=1e-5)


def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(chain):
    rank0, rank1 = (r["value"] for r in chain["two_accum"])
    # Rank 1 alone got SIGINT, twice, during step 7: both finished the step, rank 0 saved it.
    assert rank0["interrupted_at"] == rank1["interrupted_at"] == 7
    assert rank0["signum"] == rank1["signum"] == signal.SIGINT
    assert chain["checkpoint_7"]["iteration"] == 7


# ---------------------------------------------------------------- bad input: a clear error, no hang
LAUNCH = {"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused_before_meeting(corpus, tmp_path, monkeypatch,
                                                                                      capsys):
    for name, value in {**LAUNCH, "WORLD_SIZE": "3"}.items():  # port 1: a rendezvous would fail, not hang
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"batch_size 8 \(the global batch of one step\) does not split evenly over "
                                          r"3 process\(es\) x 1 accumulation step\(s\): it must be a multiple of 3"):
        train(config(corpus), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert main(["--config", str(write_config(tmp_path, config(corpus))), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "multiple of 3" in err[0]


def write_config(folder: Path, cfg: TrainConfig) -> Path:
    import json

    path = folder / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def test_an_incomplete_launch_environment_is_named(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DistributedError, match=r"WORLD_SIZE=2 asks for a distributed run, but RANK, LOCAL_RANK, "
                                               r"MASTER_ADDR, MASTER_PORT are not set: start the processes with torchrun"):
        world_from_env()
    assert main(["--config", str(write_config(tmp_path, config(corpus))), "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: WORLD_SIZE=2")
    with pytest.raises(DistributedError, match=r"WORLD_SIZE='two' is not an integer"):
        world_from_env({"WORLD_SIZE": "two"})


@pytest.mark.parametrize("rank", [0, 1])
def test_a_missing_rendezvous_fails_within_the_timeout(corpus, tmp_path, monkeypatch, rank):
    # Rank 0 waits for a rank 1 that never comes; rank 1 knocks at a rank 0 that is not there.
    for name, value in {**LAUNCH, "WORLD_SIZE": "2", "RANK": str(rank), "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    start = time.monotonic()
    with pytest.raises(DistributedError, match=rf"rank {rank} of 2: the rendezvous at 127.0.0.1:\d+ failed within the "
                                               rf"timeout \(2 s\): not all 2 processes arrived"):
        train(config(corpus, dist_timeout=2.0), out_dir=tmp_path / "run", progress=False)
    assert time.monotonic() - start < 2.0 + 3.0
    assert not (tmp_path / "run").exists()
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_rank_that_dies_or_hangs_stops_the_others_within_the_timeout(corpus, tmp_path, how):
    cfg = config(corpus, dist_timeout=3.0)
    outcome = run_ranks(_job_fail_rank_1, tmp_path / "ranks", wait_for=(0,), cfg=cfg.to_dict(),
                        out=str(tmp_path / "run"), how=how, at_step=3)
    report = outcome[0]["value"]
    assert report["message"].startswith("rank 0 of 2: step 3 (averaging gradients) failed: another process died, "
                                        "hung for longer than the timeout (3 s), or the connection broke"), report
    assert report["seconds"] < 3.0 + 3.0  # gloo's own timeout, plus a margin for a busy machine
    if how == "hangs":
        assert report["seconds"] > 2.5  # it did wait for the hung rank, up to the timeout
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 0  # the last checkpoint is intact
