import csv
import json
import math

import pytest
import torch

from conftest import SMALL_CORPUS as TEXT
from tinyformer.train import RunResult, TrainConfig, main, prepare_data, train


def test_training_lowers_the_loss_and_writes_its_outputs(cfg, tmp_path):
    result = train(cfg, out_dir=tmp_path / "run", progress=False)
    assert isinstance(result, RunResult) and result.config == cfg and result.steps == 24
    assert (result.rank, result.world_size, result.parameters) == (0, 1, sum(p.numel() for p in result.model.parameters()))
    log = result.log
    assert log["val_step"] == [8, 16, 24] and len(log["train_loss"]) == 24
    assert log["train_loss"][-1] < log["train_loss"][0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "log.csv", "result.json", "tokenizer.json"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 24 and rows[7]["val_loss"] != "" and rows[0]["val_loss"] == ""
    assert json.loads((tmp_path / "run" / "result.json").read_text())["final_val_loss"] == pytest.approx(log["val_loss"][-1])


def test_resume_continues_the_same_loss_trajectory_bit_for_bit(cfg, tmp_path):
    data = prepare_data(cfg)
    full = train(cfg, out_dir=tmp_path / "full", progress=False, data=data)
    train(cfg, out_dir=tmp_path / "split", progress=False, data=data, stop_after=10)
    resumed = train(cfg, out_dir=tmp_path / "split", progress=False, data=data, resume=True)
    assert resumed.log["train_loss"] == full.log["train_loss"]
    assert resumed.log["val_loss"] == full.log["val_loss"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_a_different_config(cfg, tmp_path):
    train(cfg, out_dir=tmp_path / "run", progress=False, stop_after=5)
    cfg.lr = 1e-3
    with pytest.raises(ValueError, match="different TrainConfig.*lr: 0.003 vs 0.001"):
        train(cfg, out_dir=tmp_path / "run", progress=False, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, out_dir=tmp_path / "empty", progress=False, resume=True)


def test_command_line(cfg, tmp_path, capsys):
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    main(["--config", str(config_file), "--out", str(tmp_path / "cli"), "--max-steps", "8", "--no-compile"])
    assert "final val loss" in capsys.readouterr().out
    assert (tmp_path / "cli" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"colour": 1})


# ---------------------------------------------------------------- validation, safety, resume rules
from pathlib import Path  # noqa: E402

from tinyformer.model import TransformerConfig, TransformerLM  # noqa: E402
from tinyformer.train import ConfigError, ResumeError  # noqa: E402
from tinyformer.train.run_folder import finite_or_none  # noqa: E402
from tinyformer.checkpoints import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from tinyformer.optim import cosine_lr_schedule  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def small(cfg, **changes):
    return TrainConfig.from_dict({**cfg.to_dict(), "max_steps": 6, "warmup_steps": 2, "eval_interval": 3, **changes})


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lr=float("nan")), r"TrainConfig.lr must be a finite number > 0, got nan"),
        (dict(lr=-1e-3), r"TrainConfig.lr must be a finite number > 0, got -0.001"),
        (dict(min_lr=1e-2), r"TrainConfig.min_lr must be <= lr \(0.003\).*got 0.01"),
        (dict(grad_clip=-1.0), r"TrainConfig.grad_clip must be a finite number > 0, got -1.0"),
        (dict(grad_clip=0), r"TrainConfig.grad_clip must be a finite number > 0, got 0"),
        (dict(max_steps=0), r"TrainConfig.max_steps must be an integer >= 1, got 0"),
        (dict(max_steps="5"), r"TrainConfig.max_steps must be an integer >= 1, got '5' \(str\)"),
        (dict(max_steps=True), r"TrainConfig.max_steps must be an integer >= 1, got True \(bool\)"),
        (dict(max_steps=5.0), r"TrainConfig.max_steps must be an integer >= 1, got 5.0 \(float\)"),
        (dict(warmup_steps=30, max_steps=20), r"TrainConfig.warmup_steps must be <= max_steps \(20\), got 30"),
        (dict(eval_batches=0), r"TrainConfig.eval_batches must be an integer >= 1, got 0"),
        (dict(batch_size=0), r"TrainConfig.batch_size must be an integer >= 1, got 0"),
        (dict(eval_interval=0), r"TrainConfig.eval_interval must be an integer >= 1, got 0"),
        (dict(checkpoint_interval=-1), r"TrainConfig.checkpoint_interval must be an integer >= 0, got -1"),
        (dict(betas=[0.9]), r"TrainConfig.betas must be two numbers in \[0, 1\)"),
        (dict(betas=[0.9, 1.0]), r"TrainConfig.betas must be two numbers in \[0, 1\)"),
        (dict(val_fraction=1.0), r"TrainConfig.val_fraction must be a number in \(0, 1\), got 1.0"),
        (dict(tokenizer="word"), r"TrainConfig.tokenizer must be one of \('char', 'bpe'\), got 'word'"),
        (dict(dtype="float16"), r"TrainConfig.dtype must be one of \('float32', 'bfloat16'\)"),
        (dict(device="gpu"), r"TrainConfig.device must be a device name"),
        (dict(compile="yes"), r"TrainConfig.compile must be true or false"),
        (dict(preset="huge"), r"TrainConfig.preset must be one of \["),
        (dict(bpe_vocab_size=100), r"TrainConfig.bpe_vocab_size must be an integer >= 256, got 100"),
        (dict(model_overrides={"colour": 1}), r"TrainConfig.model_overrides must be a dict of TransformerConfig fields \(unknown: \['colour'\]\)"),
        (dict(model_overrides={"n_heads": 3}), r"model_overrides .* give an invalid model: d_model \(128\) must be divisible by n_heads \(3\)"),
    ],
)
def test_train_config_names_field_value_and_range(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change)


def test_corpus_must_be_a_file(tmp_path):
    with pytest.raises(ConfigError, match=r"TrainConfig.corpus must be .*\(this is a directory\)"):
        TrainConfig(corpus=str(tmp_path))
    with pytest.raises(ConfigError, match=r"TrainConfig.corpus must be .*\(there is no file at this path\)"):
        TrainConfig(corpus=str(tmp_path / "missing.txt"))


def test_the_first_step_trains_with_a_positive_lr(cfg):
    log = train(small(cfg), progress=False).log
    # warmup 2: steps 1 and 2 use lr * 1/3 and lr * 2/3, step 3 the peak; step 6 (it = 5) is 3/4 of
    # the way down the cosine from 3e-3 to 3e-4: 3e-4 + (1 + cos(3 pi / 4)) / 2 * 2.7e-3 = 6.954e-4
    assert log["lr"][:3] == pytest.approx([3e-3 / 3, 3e-3 * 2 / 3, 3e-3])
    assert log["lr"][-1] == pytest.approx(6.954058e-4)


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(cfg, tmp_path):
    c = small(cfg)
    out = tmp_path / "run"
    first = train(c, out_dir=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match=r"already holds a run \(tokenizer.json, checkpoint.pt, log.csv, result.json\)"):
        train(c, out_dir=out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    second = train(c, out_dir=out, progress=False, overwrite=True)
    assert second.log == first.log


def test_resume_on_a_finished_run_keeps_its_timing(cfg, tmp_path):
    c = small(cfg)
    out = tmp_path / "run"
    train(c, out_dir=out, progress=False)
    saved = json.loads((out / "result.json").read_text())
    again = train(c, out_dir=out, progress=False, resume=True)
    assert again.seconds == saved["seconds"] > 0
    assert json.loads((out / "result.json").read_text())["seconds"] == saved["seconds"]


def test_result_json_is_strict_json_even_with_nan(cfg, tmp_path, monkeypatch):
    import tinyformer.train.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: float("nan"))
    result = train(small(cfg), out_dir=tmp_path / "run", progress=False)
    assert math.isnan(result.final_val_loss)

    def no_constants(name):
        raise AssertionError(f"result.json holds the non-JSON constant {name}")

    saved = json.loads((tmp_path / "run" / "result.json").read_text(), parse_constant=no_constants)
    assert saved["final_val_loss"] is None and saved["log"]["val_loss"] == [None, None]
    assert finite_or_none({"a": [1.0, float("inf")], "b": float("-inf")}) == {"a": [1.0, None], "b": None}


def test_short_validation_split_is_refused_before_anything_is_written(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcdefghij" * 15)  # 150 chars: validation 15 tokens < context 16 + 1
    c = TrainConfig(corpus=str(corpus), max_steps=4, warmup_steps=0, batch_size=2,
                    model_overrides={"d_model": 32, "n_layers": 1, "n_heads": 2, "context_length": 16})
    with pytest.raises(ConfigError, match=r"the validation split has 15 tokens .* context_length 16 needs 17"):
        train(c, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_checks_the_corpus_content_not_its_path(cfg, tmp_path):
    c = small(cfg)
    out = tmp_path / "run"
    train(c, out_dir=out, progress=False, stop_after=3)
    moved = tmp_path / "moved.txt"
    moved.write_text(Path(c.corpus).read_text())
    resumed = train(small(cfg, corpus=str(moved)), out_dir=out, progress=False, resume=True)  # same text: fine
    assert resumed.log["step"] == [1, 2, 3, 4, 5, 6]
    train(c, out_dir=tmp_path / "run2", progress=False, stop_after=3)
    Path(c.corpus).write_text(TEXT.replace("God", "god"))
    with pytest.raises(ResumeError, match=r"corpus content sha256: [0-9a-f]{64} vs [0-9a-f]{64}"):
        train(c, out_dir=tmp_path / "run2", progress=False, resume=True)


def test_resume_refusal_names_every_differing_field(cfg, tmp_path):
    train(small(cfg), out_dir=tmp_path / "run", progress=False, stop_after=2)
    with pytest.raises(ResumeError, match=r"batch_size: 4 vs 8; lr: 0.003 vs 0.002"):
        train(small(cfg, lr=2e-3, batch_size=8), out_dir=tmp_path / "run", progress=False, resume=True)
    with pytest.raises(ResumeError, match=r"max_steps 1: the run has already taken 2 steps"):
        train(small(cfg, max_steps=1, warmup_steps=0), out_dir=tmp_path / "run", progress=False, resume=True)


def test_resume_with_more_steps_follows_the_longer_schedule(cfg, tmp_path):
    out = tmp_path / "run"
    short = train(small(cfg), out_dir=out, progress=False)
    longer = train(small(cfg, max_steps=10, eval_interval=5), out_dir=out, progress=False, resume=True)
    log = longer.log
    assert log["step"] == list(range(1, 11)) and log["train_loss"][:6] == short.log["train_loss"]
    assert log["lr"][:6] == short.log["lr"]  # steps taken keep their lr
    # step n (0-based it = n - 1) of the longer run: cosine over warmup 2 .. max_steps 10
    assert log["lr"][6:] == [cosine_lr_schedule(it, 3e-3, 3e-4, 2, 10) for it in range(6, 10)]
    assert log["lr"][6] == pytest.approx(3e-4 + 0.5 * (1 + math.cos(math.pi * 4 / 8)) * 2.7e-3)  # hand value: 0.00165
    assert log["val_step"] == [3, 6, 10]  # the first run's evaluations, then the new interval and the end
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 10


def test_checkpoint_of_another_model_is_refused_on_resume(cfg, tmp_path):
    out = tmp_path / "run"
    train(small(cfg), out_dir=out, progress=False, stop_after=2)
    payload = load_checkpoint(out / "checkpoint.pt")
    # Same tensor shapes, different model (no RoPE): only the recorded config tells them apart.
    other = TransformerLM(TransformerConfig.from_dict({**payload["config"], "positions": "none"}))
    save_checkpoint(out / "checkpoint.pt", other, None, 2, extra=payload["extra"])
    with pytest.raises(CheckpointError, match="does not fit this model.*positions: 'none' vs 'rope'"):
        train(small(cfg), out_dir=out, progress=False, resume=True)


@pytest.mark.parametrize("name", ["book.json", "base_25m_gpu.json"])
def test_the_shipped_configs_are_valid(name, tmp_path, capsys):
    path = ROOT / "tinyformer" / "configs" / name
    TrainConfig.from_dict(json.loads(path.read_text()))
    assert main(["--config", str(path), "--out", str(tmp_path / "run"), "--check-config"]) == 0
    assert "config OK" in capsys.readouterr().out


# ---------------------------------------------------------------- issue 26: defaults that adapt, ranges, memory


def test_a_warmup_left_unset_adapts_to_the_run_length(tmp_path, capsys):
    from tinyformer.train.config import DEFAULT_WARMUP_STEPS

    assert TrainConfig().warmup_steps == DEFAULT_WARMUP_STEPS == 50  # max_steps 500: unchanged
    assert TrainConfig(max_steps=20).warmup_steps == 2 and TrainConfig(max_steps=5).warmup_steps == 0
    assert TrainConfig(max_steps=20, warmup_steps=7).warmup_steps == 7  # a value the user set is kept
    assert main(["--max-steps", "20", "--out", str(tmp_path / "run"), "--check-config"]) == 0
    assert '"warmup_steps": 2' in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"warmup_steps must be <= max_steps \(20\), got 30 \(int\); lower --warmup-steps"):
        TrainConfig(max_steps=20, warmup_steps=30)


@pytest.mark.parametrize("seed", [2**63, 2**64 - 1, 2**80])
def test_a_seed_torch_cannot_take_is_refused_naming_the_flag(seed, tmp_path, capsys):
    with pytest.raises(ConfigError, match=rf"TrainConfig.seed must be an integer in \[0, 2\*\*63\), got {seed} .*--seed"):
        TrainConfig(seed=seed)
    assert main(["--seed", str(seed), "--out", str(tmp_path / "run"), "--check-config"]) == 2
    assert "--seed" in capsys.readouterr().err
    TrainConfig(seed=2**63 - 1)  # the largest accepted seed works with the evaluation's generator
    torch.Generator().manual_seed(2**63 - 1 + 1_000_003 + 10**9)


@pytest.mark.parametrize("name", ["book.json", "base_25m_gpu.json"])
def test_the_batch_memory_bound_never_refuses_the_shipped_runs(name):
    from tinyformer.model import preset
    from tinyformer.train.prepare import batch_memory_lower_bound

    cfg = TrainConfig.from_dict(json.loads((ROOT / "tinyformer" / "configs" / name).read_text()))
    model_config = preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": max(cfg.bpe_vocab_size, 256)})
    need = batch_memory_lower_bound(cfg, model_config)
    assert need["host"] + need["device"] < (256 if name == "book.json" else 8192) * 2**20, need
    huge = batch_memory_lower_bound(TrainConfig.from_dict({**cfg.to_dict(), "batch_size": 10**9}), model_config)
    assert huge["device"] > 2**40  # a typo's batch is refused on any machine


def test_small_runs_pass_the_batch_memory_check(cfg, tmp_path):
    from tinyformer.model import preset
    from tinyformer.train.prepare import check_batch_memory

    check_batch_memory(cfg, preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": 100}), "cpu")


def test_compile_is_quiet_unless_debug(monkeypatch):
    """torch.compile's graph-break warnings (on CPU one block of ~20 lines per break, from the
    logger torch._dynamo.variables.tensor) stay off the console during a run. Compiling a model on
    CPU takes minutes, so this checks the logging configuration the run uses, with the record
    torch itself emits, seen by a handler beside torch's own console handler."""
    import logging

    import torch._dynamo  # noqa: F401  (registers torch's loggers and their handlers, as a compile does)
    from tinyformer.train.loop import _quiet_compile

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    dynamo = logging.getLogger("torch._dynamo")
    monkeypatch.setattr(dynamo, "handlers", [*dynamo.handlers])  # the original list comes back after the test
    dynamo.addHandler(handler)
    monkeypatch.delenv("TINYFORMER_DEBUG", raising=False)
    monkeypatch.delenv("TORCH_LOGS", raising=False)
    graph_break = logging.getLogger("torch._dynamo.variables.tensor")
    with _quiet_compile(True):
        graph_break.warning("Graph break from `Tensor.item()`, consider setting: ...")
    assert seen == []
    graph_break.warning("Graph break outside a run")  # torch's own setting is restored afterwards
    assert seen == ["Graph break outside a run"]
    monkeypatch.setenv("TINYFORMER_DEBUG", "1")
    with _quiet_compile(True):
        graph_break.warning("Graph break with --debug")
    assert seen[-1] == "Graph break with --debug"
