"""The exercise track: starters, the checker, and its mistake detectors.

The reference solutions must pass every check against tinyformer and PyTorch; each
deliberately wrong implementation must fail and be named as exactly its own mistake;
bad reader files must cost one clear line each, never the run.
"""

import functools
import importlib
import inspect
import io
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import interrupt_when_ready
import torch

import tinyformer.exercises
from tinyformer.exercises import CHAPTERS, CLASSIC, COMPONENTS, check, check_dir, diagnose, find_component, init
from tinyformer.exercises.__main__ import main
from tinyformer.exercises.attention.hints import attention_unscaled
from tinyformer.exercises.checker import MAX_TIMEOUT, REFERENCE_CALLABLES, evaluate, resolve
from tinyformer.exercises.positions.hints import rope_halves

EXERCISES = Path(tinyformer.exercises.__file__).parent  # one folder per chapter
_STARTERS = "_tinyformer_starters"  # the package the starter files are imported as, in a test


def chapter_module(chapter, part):
    return importlib.import_module(f"tinyformer.exercises.{chapter}.{part}")


def solution(component):
    return getattr(chapter_module(component.chapter, "solution"), component.name)


def reader_solution(chapter):
    """A chapter's solution as a reader's file: it imports the earlier chapters' pieces from
    its own folder (``from .attention import softmax``), as the starters do."""
    text = (EXERCISES / chapter / "solution.py").read_text()
    return re.sub(r"from tinyformer\.exercises\.(\w+)\.solution import", r"from .\1 import", text)


def write_solutions(folder, chapters):
    for chapter in chapters:
        (folder / f"{chapter}.py").write_text(reader_solution(chapter))


@pytest.fixture(scope="module")
def starters(tmp_path_factory):
    """The files ``init`` writes, imported as a package, as the checker imports a reader's
    folder (they import each other: ``from .attention import softmax``)."""
    folder = tmp_path_factory.mktemp("starters")
    init(folder, out=io.StringIO())
    package = types.ModuleType(_STARTERS)
    package.__path__ = [str(folder)]
    sys.modules[_STARTERS] = package
    yield lambda component: getattr(importlib.import_module(f"{_STARTERS}.{component.chapter}"), component.name)
    for name in [n for n in sys.modules if n == _STARTERS or n.startswith(_STARTERS + ".")]:
        del sys.modules[name]


ALL_MISTAKES = [(c, m) for c in COMPONENTS for m in c.mistakes]


# ------------------------------------------------------------------- coverage


def test_the_components_the_issue_asks_for_are_all_there():
    names = {c.name for c in COMPONENTS}
    assert {
        "softmax", "scaled_dot_product_attention", "causal_mask", "sinusoidal_positions", "rope",
        "MultiHeadAttention", "LayerNorm", "RMSNorm", "SwiGLU", "TransformerBlock", "TransformerLM",
        "cross_entropy", "adamw_step", "top_k_distribution", "top_p_distribution", "merge_pair",
    } <= names
    assert {c.chapter for c in COMPONENTS} == set(CHAPTERS)
    # one folder per chapter, named like the book's chapters, holding its four parts
    toc = (Path(__file__).parents[1] / "_toc.yml").read_text()
    for chapter in CHAPTERS:
        assert f"file: {chapter}\n" in toc
        for part in ("__init__.py", "starter.py", "solution.py", "checks.py", "hints.py"):
            assert (EXERCISES / chapter / part).is_file(), (chapter, part)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_declares_its_own_components_and_uses_every_hint(chapter):
    components = chapter_module(chapter, "checks").COMPONENTS
    assert components and all(c.chapter == chapter for c in components)
    assert components == [c for c in COMPONENTS if c.chapter == chapter]  # the registry keeps book order
    hints = chapter_module(chapter, "hints").MISTAKES.by_component
    assert set(hints) == {c.name for c in components}  # no hint is registered under a misspelt name
    assert all(c.mistakes is hints[c.name] for c in components)


def test_the_mistakes_the_issue_names_are_detected():
    titles = " | ".join(m.title for _, m in ALL_MISTAKES)
    for phrase in [
        "not divided by √d_head", "softmax over the wrong axis", "mask polarity inverted", "mask applied after softmax",
        "RoPE on halves instead of adjacent pairs", "positions off by one", "unbiased variance", "without ε inside the root",
        "RMSNorm subtracting the mean", "gate and value swapped", "without the log-sum-exp shift", "targets not shifted",
        "folding decay into the gradient", "top-p keeping the token that crosses p out",
    ]:
        assert phrase in titles, phrase


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.qualname)
def test_starter_signatures_match_the_solutions(component, starters):
    mine, reference = starters(component), solution(component)
    if component.kind == "class":
        for method in ("__init__", "forward"):
            assert inspect.signature(getattr(mine, method)) == inspect.signature(getattr(reference, method))
    else:
        assert inspect.signature(mine) == inspect.signature(reference)
    assert mine.__doc__ and "NotImplementedError" not in mine.__doc__


# ---------------------------------------------------- references and detectors


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.qualname)
def test_reference_solution_passes(component):
    result = evaluate(component, solution(component))
    assert result.status == "pass", result.lines()
    assert diagnose(solution(component), component.name) == []  # every detector stays silent
    assert result.reference_call == "" and not any("note:" in line for line in result.lines())


@pytest.mark.parametrize("component,mistake", ALL_MISTAKES, ids=lambda x: getattr(x, "qualname", None) or x.title)
def test_detector_fires_on_its_own_mistake_only(component, mistake):
    result = evaluate(component, mistake.impl)
    assert result.status == "fail", result.lines()  # the cases tell the mistake from the reference
    assert result.mistakes == [mistake.title], result.lines()
    text = "\n".join(result.lines())
    assert f"looks like: {mistake.title}" in text and "Hint:" in text


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_has_a_classic_mistake_the_checker_names(chapter):
    name, impl = CLASSIC[chapter]
    assert (name, impl) == chapter_module(chapter, "hints").CLASSIC
    component = find_component(name)
    assert component.chapter == chapter
    out = io.StringIO()
    report = check(impl, name, out=out)
    assert not report.passed and len(report[name].mistakes) == 1
    assert f"looks like: {report[name].mistakes[0]}" in out.getvalue()


def test_rope_convention_is_the_librarys_adjacent_pairs():
    """The exercise teaches tinyformer's convention: pairs (x[2i], x[2i+1]); halves is the mistake."""
    from tinyformer.exercises.positions.solution import rope

    x, pos = torch.randn(2, 5, 8), torch.arange(5)
    library = __import__("tinyformer").RotaryPositionalEmbedding(8, 5)(x, pos)
    torch.testing.assert_close(rope(x, pos), library)
    assert not torch.allclose(rope_halves(x, pos), library)


def test_top_p_keeps_the_crossing_token_like_the_library():
    from tinyformer import next_token_distribution
    from tinyformer.exercises.sampling.solution import top_p_distribution

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    # 0.5 < 0.6, then 0.5 + 0.3 crosses 0.6: the second token is kept, the third is not
    expected = torch.tensor([[0.625, 0.375, 0.0]])
    torch.testing.assert_close(top_p_distribution(logits, 0.6), expected)
    torch.testing.assert_close(next_token_distribution(logits, top_p=0.6), expected)


# ------------------------------------------------------------ the report text


def test_failure_says_what_was_expected_and_what_came_back():
    out = io.StringIO()
    report = check(attention_unscaled, "scaled_dot_product_attention", out=out)
    text = out.getvalue()
    assert not report.passed and report["scaled_dot_product_attention"].status == "fail"
    assert "✗ attention.scaled_dot_product_attention" in text
    assert "first difference at [" in text and "expected" in text and "got" in text and "max error" in text
    assert "looks like: scores not divided by √d_head" in text

    out = io.StringIO()
    check(lambda q, k, v: (q @ k.transpose(-2, -1)), "scaled_dot_product_attention", out=out)
    assert "returned shape (4, 4); expected (4, 8)" in out.getvalue()


def test_passing_check_prints_a_tick_and_the_references():
    out = io.StringIO()
    from tinyformer.exercises.multihead.solution import MultiHeadAttention

    report = check(MultiHeadAttention, "multihead.MultiHeadAttention", out=out)
    assert report.passed
    assert out.getvalue().startswith("[1/1] ✓ multihead.MultiHeadAttention")
    assert "PyTorch nn.MultiheadAttention" in out.getvalue()


def test_wrong_return_type_and_dtype_are_named():
    report = check(lambda x, dim=-1: x.tolist(), "softmax", quiet=True)
    assert "returned a list" in report["softmax"].details[1]
    report = check(lambda x, dim=-1: torch.softmax(x.float(), dim), "softmax", quiet=True)
    assert "returned dtype torch.float32; expected torch.float64" in "\n".join(report["softmax"].details)
    report = check(lambda *a, **k: (a[0], a[2]), "adamw_step", quiet=True)
    assert "expected a tuple of 3 tensors" in report["adamw_step"].summary


def test_module_with_extra_or_missing_parameters_gets_a_clear_line():
    class WithBias(torch.nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(self, name, torch.nn.Linear(d_model, d_model))  # bias=True by default

        def forward(self, x, mask=None):
            return x

    result = check(WithBias, "MultiHeadAttention", quiet=True)["MultiHeadAttention"]
    assert result.status == "error" and "'q_proj.bias'" in result.summary and "bias=False" in result.summary

    class Empty(torch.nn.Module):
        def __init__(self, d_model, eps=1e-5):
            super().__init__()

        def forward(self, x):
            return x

    result = check(Empty, "RMSNorm", quiet=True)["RMSNorm"]
    assert result.status == "error" and "no parameter 'weight' of shape (8,)" in result.summary


def test_wrong_kind_and_unknown_name():
    assert "should be a class" in check(torch.softmax, "LayerNorm", quiet=True).results[0].summary
    assert "should be a function" in check(torch.nn.Softmax, "softmax", quiet=True).results[0].summary
    with pytest.raises(ValueError, match="unknown component 'softmaxx'.*attention.softmax"):
        check(torch.softmax, "softmaxx")
    with pytest.raises(ValueError, match="unknown component"):
        find_component("masks.softmax")  # softmax is taught in attention, not masks


def test_what_the_readers_code_prints_is_shown():
    def noisy(x, dim=-1):
        print("shape is", tuple(x.shape))
        return torch.softmax(x, dim)

    out = io.StringIO()
    report = check(noisy, "softmax", out=out)
    assert report.passed and "shape is (2, 3, 5)" in out.getvalue()


def test_a_function_that_raises_names_the_line():
    def broken(x, dim=-1):
        return x.view(-1, 7)

    result = check(broken, "softmax", quiet=True).results[0]
    assert result.status == "error" and result.summary.startswith("raised RuntimeError")
    assert "test_exercises.py, line" in result.summary and "x.view(-1, 7)" in result.summary


# ------------------------------------------------------- time limits, crashes


def _forever(x, dim=-1):
    while True:
        pass


def test_infinite_loop_times_out_in_a_child_process():
    start = time.perf_counter()
    result = check(_forever, "softmax", timeout=1.0, quiet=True).results[0]
    assert result.status == "timeout" and "timed out after 1 s" in result.summary
    assert time.perf_counter() - start < 20


def test_infinite_loop_times_out_without_fork_too():
    result = check(_forever, "softmax", timeout=1.0, isolate=False, quiet=True).results[0]
    assert result.status == "timeout"


def test_a_crashing_process_is_one_line():
    result = check(lambda x, dim=-1: os._exit(3), "softmax", quiet=True).results[0]
    assert result.status == "error" and "crashed" in result.summary
    assert "exit code 3" in result.summary  # the child is waited for before its exit code is read


def _interrupts(x, dim=-1):
    raise KeyboardInterrupt


def test_a_keyboard_interrupt_the_readers_code_raises_is_named_with_its_line():
    """It used to read "the check crashed (exit code None)"."""
    result = check(_interrupts, "softmax", quiet=True).results[0]
    assert result.status == "error" and result.summary.startswith("raised KeyboardInterrupt"), result.summary
    assert "test_exercises.py, line" in result.summary and "raise KeyboardInterrupt" in result.summary


def test_ctrl_c_during_check_is_one_line_and_exit_130(tmp_path):
    """SIGINT (what Ctrl-C sends) to `python -m tinyformer.exercises check` while a component
    runs: one line, exit status 130, and the child running the reader's code is gone."""
    started = tmp_path / "started"
    (tmp_path / "attention.py").write_text(
        f"import os, pathlib\npathlib.Path({str(started)!r}).write_text(str(os.getpid()))\nwhile True:\n    pass\n"
    )
    code, out, err = interrupt_when_ready(
        [sys.executable, "-m", "tinyformer.exercises", "check", str(tmp_path), "--chapter", "attention", "--timeout", "120"],
        lambda: started.exists() and started.read_text() != "", timeout=120)
    assert code == 130, out + err
    assert err.strip() == "interrupted" and "Traceback" not in out + err
    with pytest.raises(ProcessLookupError):
        os.kill(int(started.read_text()), 0)  # the child was killed and reaped


# ------------------------------------------------------------- init and CLI


def test_init_then_check_reports_every_component_not_yet_implemented(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.py")) == sorted(f"{c}.py" for c in CHAPTERS)
    for chapter in CHAPTERS:  # each one a copy of its chapter folder's starter.py
        assert (tmp_path / f"{chapter}.py").read_text() == (EXERCISES / chapter / "starter.py").read_text()
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    lines = [line for line in out.out.splitlines() if line.startswith("[")]
    assert len(lines) == len(COMPONENTS)
    assert all("✗" in line and line.endswith("not yet implemented") for line in lines), lines
    assert f"0 of {len(COMPONENTS)} components pass, {len(COMPONENTS)} not yet implemented." in out.out


def test_init_never_overwrites(tmp_path):
    mine = tmp_path / "attention.py"
    mine.write_text("# my work\n")
    out = io.StringIO()
    written = init(tmp_path, out=out)
    assert mine.read_text() == "# my work\n"
    assert mine not in written and len(written) == len(CHAPTERS) - 1
    assert f"skipped {mine}" in out.getvalue()
    again = init(tmp_path, out=io.StringIO())
    assert again == []
    with pytest.raises(ValueError, match="unknown chapter 'attn'"):
        init(tmp_path, ["attn"])


def test_reference_solutions_pass_through_the_cli(tmp_path, capsys):
    """The whole path a reader takes: files in a folder, importing each other, in forked children."""
    assert "from .attention import softmax" in reader_solution("masks")  # the files import each other
    write_solutions(tmp_path, CHAPTERS)
    start = time.perf_counter()
    assert main(["check", str(tmp_path)]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert f"{len(COMPONENTS)} of {len(COMPONENTS)} components pass." in out
    print(f"full check of the reference solutions: {elapsed:.1f} s")
    assert main(["check", str(tmp_path), "--chapter", "masks"]) == 0
    assert "Checking 2 components" in capsys.readouterr().out


def test_bad_reader_files_cost_one_line_each_and_the_run_goes_on(tmp_path, capsys):
    init(tmp_path, out=io.StringIO())
    write_solutions(tmp_path, ("attention", "multihead", "training", "tokens", "sampling"))
    (tmp_path / "positions.py").write_text("def sinusoidal_positions(T, D)\n    return None\n")  # syntax error
    tokens = (tmp_path / "tokens.py").read_text()
    (tmp_path / "tokens.py").write_text(tokens.split("def merge_pair")[0])  # merge_pair missing
    sampling = reader_solution("sampling")
    sampling = sampling.replace(
        "    logits = logits / temperature\n", "    raise ValueError('k is too big')\n", 1
    ).replace("    probs = torch.softmax(logits / temperature, dim=-1)\n", "    return logits.tolist()\n", 1)
    (tmp_path / "sampling.py").write_text(sampling)  # top-k raises, top-p returns the wrong type
    training = reader_solution("training")
    (tmp_path / "training.py").write_text(
        training.replace('    b1, b2 = betas\n', "    while True:\n        pass\n", 1)
    )  # adamw_step loops forever

    assert main(["check", str(tmp_path), "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    line = {re.search(r"[✓✗] (\S+)", l).group(1): l for l in out.splitlines() if l.startswith("[")}
    assert len(line) == len(COMPONENTS)
    assert "syntax error in positions.py, line 1: expected ':'" in line["positions.sinusoidal_positions"]
    assert "syntax error in positions.py" in line["positions.rope"]
    assert "syntax error in positions.py" in line["language_model.TransformerLM"]  # imports positions
    assert "tokens.py has no function named 'merge_pair'" in line["tokens.merge_pair"]
    assert "✓" in line["tokens.count_pairs"]
    assert "raised ValueError: k is too big (sampling.py, line" in line["sampling.top_k_distribution"]
    assert "✗" in line["sampling.top_p_distribution"]
    assert "vs tinyformer: returned a list of 2 items; expected a tensor of shape (2, 10)" in out
    assert "timed out after 3 s" in line["training.adamw_step"]
    for passing in ("attention.softmax", "multihead.SwiGLU", "training.cross_entropy", "training.next_token_loss"):
        assert "✓" in line[passing], line[passing]
    assert "not yet implemented" in line["masks.causal_mask"]


def test_check_dir_in_process_reads_the_files_afresh(tmp_path):
    """Without fork (isolate=False) the reader's modules are unloaded after each check."""
    init(tmp_path, ["attention"], out=io.StringIO())
    report = check_dir(tmp_path, "attention", isolate=False, quiet=True)
    assert [r.status for r in report.results] == ["todo", "todo"]
    write_solutions(tmp_path, ["attention"])
    assert check_dir(tmp_path, "attention", isolate=False, quiet=True).passed
    assert not (tmp_path / "__pycache__").exists()  # the reader's folder holds only their files
    result = check_dir(tmp_path, "masks", isolate=False, quiet=True).results[0]
    assert result.status == "missing" and "masks.py not found" in result.summary


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["check", str(tmp_path / "nowhere")])
    assert "no folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", str(tmp_path), "--chapter", "attn"])
    assert "invalid choice: 'attn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", str(tmp_path), "--timeout", "0"])
    assert "--timeout must be positive" in capsys.readouterr().err
    for bad in ("nan", "inf", "1e300", "-1"):  # nan and inf used to end in a raw traceback
        with pytest.raises(SystemExit) as exc:
            main(["check", str(tmp_path), "--timeout", bad])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "Traceback" not in err
        assert f"error: --timeout must be positive and at most {MAX_TIMEOUT:g} seconds, got {float(bad):g}" in err
    with pytest.raises(ValueError, match="timeout must be positive and at most 86400 seconds"):
        check(torch.softmax, "softmax", timeout=float("inf"))
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path / "file")])
    assert "not a folder" in capsys.readouterr().err


# ------------------------------------ calling the reference, printing a lot, links, rights


def test_an_implementation_that_is_or_calls_the_reference_passes_with_a_note():
    """`softmax = torch.softmax` used to pass without a word."""
    import torch.nn.functional as F

    import tinyformer as tf

    def calls(x, dim=-1):
        return torch.softmax(x, dim)

    def method(x, dim=-1):
        return x.softmax(dim)

    @functools.wraps(tf.softmax)
    def wraps(*args, **kwargs):
        return tf.softmax(*args, **kwargs)

    expected = {  # (torch.softmax itself needs dim, so it fails the first case)
        tf.softmax: "is tinyformer.softmax",
        calls: "calls torch.softmax",
        method: "calls torch.Tensor.softmax",
        wraps: "wraps tinyformer.softmax",
        functools.partial(torch.softmax, dim=-1): "wraps torch.softmax",
        lambda x, dim=-1: F.softmax(x, dim): "calls torch.nn.functional.softmax",
    }
    for impl, how in expected.items():
        out = io.StringIO()
        result = check(impl, "softmax", out=out)["softmax"]
        assert result.passed, result.lines()
        assert (f"note: your softmax {how}, the reference it is checked against: it passes, but write it yourself"
                in out.getvalue()), (how, out.getvalue())
        assert result.reference_call == how.split()[-1]

    class LayerNorm(torch.nn.Module):  # the reader's parameters, PyTorch's function
        def __init__(self, d_model, eps=1e-5):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(d_model))
            self.bias = torch.nn.Parameter(torch.zeros(d_model))
            self.eps = eps

        def forward(self, x):
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)

    result = check(LayerNorm, "LayerNorm", quiet=True)["LayerNorm"]
    assert result.passed and result.reference_call == "torch.nn.functional.layer_norm", result.lines()

    class RMSNorm(tf.RMSNorm):
        pass

    result = check(RMSNorm, "RMSNorm", quiet=True)["RMSNorm"]
    assert result.passed and "note: your RMSNorm subclasses tinyformer.RMSNorm" in "\n".join(result.lines())
    # Building blocks are not the reference: sampling calls torch.softmax, SwiGLU F.silu.
    from tinyformer.exercises.multihead.solution import SwiGLU
    from tinyformer.exercises.sampling.solution import top_k_distribution

    assert check(top_k_distribution, "top_k_distribution", quiet=True)["top_k_distribution"].reference_call == ""
    assert check(SwiGLU, "SwiGLU", quiet=True)["SwiGLU"].reference_call == ""


def test_the_note_reaches_the_cli_for_a_file_that_imports_the_reference(tmp_path, capsys):
    shortcut = "\n\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"  # replaces the one above
    (tmp_path / "attention.py").write_text(reader_solution("attention") + shortcut)
    assert main(["check", str(tmp_path), "--chapter", "attention"]) == 0
    out = capsys.readouterr().out
    assert "note: your softmax calls torch.softmax, the reference it is checked against: it passes" in out
    assert out.count("note:") == 1  # scaled_dot_product_attention is the reader's own


def test_every_reference_callable_exists():
    assert set(REFERENCE_CALLABLES) <= {c.qualname for c in COMPONENTS}
    for names in REFERENCE_CALLABLES.values():
        for dotted in names:
            assert resolve(dotted) is not None, dotted


def _prints_50_mb(x, dim=-1):
    if x.shape == (2, 3, 5):  # the first case only
        print("x" * 50_000_000)
        print("and a second line")
    return torch.softmax(x, dim)


@pytest.mark.parametrize("isolate", [True, False])
def test_a_huge_printed_line_is_cut_in_characters(isolate):
    """One 50 MB line used to be echoed whole into the report."""
    out = io.StringIO()
    result = check(_prints_50_mb, "softmax", isolate=isolate, out=out)["softmax"]
    assert result.passed and result.output_chars == 50_000_000 + 1 + 18 and result.output_lines == 2
    assert len(result.output) <= tinyformer.exercises.checker.OUTPUT_LIMIT
    text = out.getvalue()
    assert len(text) < 3000, len(text)
    assert ("your code printed (2 lines, 50,000,019 characters, the first 1 shown, lines cut at 200 characters):"
            in text)
    assert "x" * 200 + " …\n" in text


def test_many_printed_lines_show_the_first_ten():
    def chatty(x, dim=-1):
        for i in range(10_000):
            print(f"line {i}")
        return torch.softmax(x, dim)

    lines = check(chatty, "softmax", quiet=True)["softmax"].lines()
    header = next(line for line in lines if "your code printed" in line)
    # 4 cases, 10,000 lines each
    assert header.strip() == "your code printed (40,000 lines, 395,560 characters, the first 10 shown):"
    assert lines[-1].strip() == "line 9" and len(lines) < 20


def test_init_refuses_a_symbolic_link_even_a_dangling_one(tmp_path, capsys):
    """It followed a link that pointed nowhere and wrote outside the folder."""
    folder, outside = tmp_path / "mine", tmp_path / "outside" / "written-through-the-link.py"
    folder.mkdir()
    outside.parent.mkdir()
    (folder / "attention.py").symlink_to(outside)
    with pytest.raises(SystemExit) as exc:
        main(["init", str(folder)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"{folder / 'attention.py'} is a symbolic link (to {outside}): init never writes through a link" in err
    assert not outside.exists() and sorted(p.name for p in folder.iterdir()) == ["attention.py"]  # nothing written
    with pytest.raises(FileExistsError, match="symbolic link"):
        init(folder, out=io.StringIO())


def test_init_and_check_help_say_the_readers_code_runs_with_their_rights(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"Check imports and runs the .py files in {tmp_path} with your own rights" in out
    assert "not a sandbox" in out
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "with your own rights" in help_text and "not a sandbox" in help_text


# ------------------------------------------- diagnosis from properties (probes.py)
# Hand-made learner mistakes, none of them in the hints catalogue in this exact form, each with
# the diagnosis a probe must give: a wrong probe (or a wrong factor, axis or cause) fails here.


def _verdict(impl, name):
    result = check(impl, name, quiet=True, isolate=False).results[0]
    assert result.status == "fail", result.lines()
    assert len(result.lines()) <= 6, result.lines()  # the report stays short
    return result


def _attention(q, k, v, scale):
    from tinyformer.exercises.attention.solution import softmax

    return softmax(q @ k.transpose(-2, -1) * scale(q.shape[-1]), dim=-1) @ v


def test_scores_divided_by_d_head_are_named_as_a_factor_of_sqrt_d_head():
    result = _verdict(lambda q, k, v: _attention(q, k, v, lambda d: 1 / d), "scaled_dot_product_attention")
    assert result.kinds[0] == "scale"
    assert "your scores are the reference's ÷ √d_head: did you divide by d_head instead of √d_head?" in result.details[-1]


def test_scores_divided_by_d_head_squared_are_named_too():
    """Not a catalogue entry: the factor (d_head^1.5 relative to the reference) is found and named."""
    result = _verdict(lambda q, k, v: _attention(q, k, v, lambda d: 1 / d**2), "scaled_dot_product_attention")
    assert result.kinds == ["scale"] and "÷ d_head^1.5" in result.details[-1], result.details


def test_softmax_over_the_wrong_dim_names_the_axis_it_sums_to_one_along():
    def softmax_dim0(x, dim=-1):
        return torch.softmax(x, dim=0)

    result = _verdict(softmax_dim0, "softmax")
    assert result.kinds[0] == "axis"
    assert "sum to 1 along dim 0, not along dim 2" in result.details[-2]


def test_an_ignored_mask_is_named_as_weight_on_masked_keys():
    def no_mask(q, k, v, mask):
        import math

        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v

    result = _verdict(no_mask, "masked_attention")
    assert result.kinds[0] == "invariant" and "on keys the mask hides" in result.details[-2], result.details
    assert result.kinds[1] == "ignores" and "when the mask changes" in result.details[-1]


def test_an_ignored_temperature_is_named():
    def top_k_without_temperature(logits, k, temperature=1.0):
        from tinyformer.exercises.sampling.solution import top_k_distribution

        return top_k_distribution(logits, k)

    result = _verdict(top_k_without_temperature, "top_k_distribution")
    assert result.kinds[0] == "ignores", result.details
    assert "without τ" in result.details[-2]


def test_rope_rotating_the_halves_is_named_as_the_wrong_pairs():
    result = _verdict(rope_halves, "rope")
    assert "axis" in result.kinds and any("x[i + d/2]" in line for line in result.details), result.details


def test_rope_turning_the_wrong_way_is_named_by_the_sign_of_its_angles():
    def rope_backwards(x, token_positions, theta=10000.0):
        from tinyformer.exercises.positions.solution import rope

        return rope(x, -token_positions, theta)

    result = _verdict(rope_backwards, "rope")
    assert result.kinds[0] == "scale" and "angle × −1" in result.details[-1], result.details


def test_adamw_decay_not_times_lr_is_named():
    def decay_without_lr(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        from tinyformer.exercises.training.solution import adamw_step

        param = param * (1 - weight_decay) / (1 - lr * weight_decay)  # the reference's decay undone, decay without lr
        return adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay)

    result = _verdict(decay_without_lr, "adamw_step")
    assert result.kinds[0] == "invariant"
    assert "multiplies the parameter by 1 − weight_decay (not × lr)" in result.details[-1], result.details


def test_adamw_second_moment_without_squares_is_named():
    def no_square(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        param = param * (1 - lr * weight_decay)
        exp_avg = b1 * exp_avg + (1 - b1) * grad
        exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad.abs()
        update = (exp_avg / (1 - b1**step)) / ((exp_avg_sq / (1 - b2**step)).sqrt() + eps)
        return param - lr * update, exp_avg, exp_avg_sq

    result = _verdict(no_square, "adamw_step")
    assert "not made of squares" in result.details[-1], result.details


def test_a_loss_summed_instead_of_averaged_is_named_by_the_count():
    def summed(logits, targets):
        return torch.nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="sum")

    result = _verdict(summed, "cross_entropy")
    assert "uniform logits" in result.details[-1] or "× N" in result.details[-1], result.details


def test_a_block_without_its_attention_residual_is_located():
    from tinyformer.exercises.normalization.solution import TransformerBlock, causal_mask

    class NoResidual(TransformerBlock):
        def forward(self, x):
            x = self.self_attn(self.norm1(x), causal_mask(x.shape[1]))
            return x + self.ffn(self.norm2(x))

    result = _verdict(NoResidual, "TransformerBlock")
    assert result.kinds == ["locate"] and "the residual" in result.details[-1], result.details


def test_a_language_model_that_sees_the_future_is_named():
    from tinyformer.exercises.language_model.solution import TransformerLM
    from tinyformer.exercises.normalization.solution import TransformerBlock

    class Peeking(TransformerBlock):
        def forward(self, x):
            x = x + self.self_attn(self.norm1(x))
            return x + self.ffn(self.norm2(x))

    class PeekingLM(TransformerLM):
        def __init__(self, vocab_size, context_length, d_model, n_layers, n_heads, d_ff):
            super().__init__(vocab_size, context_length, d_model, n_layers, n_heads, d_ff)
            self.blocks = torch.nn.ModuleList(Peeking(d_model, n_heads, d_ff) for _ in range(n_layers))

    result = _verdict(PeekingLM, "TransformerLM")
    assert result.kinds[0] == "causal" and "earlier positions" in result.details[-2], result.details


def test_sizes_are_named_as_roots_powers_and_ratios():
    from tinyformer.exercises.probes import name_factor

    assert name_factor(8**0.5, {"d_head": 8}) == ["× √d_head"]
    assert name_factor(1 / 8, {"d_head": 8, "T": 4})[0] == "÷ d_head"
    assert "× √(d_head/T)" in name_factor(2**0.5, {"d_head": 8, "T": 4})
    assert name_factor(1.37, {"d_head": 8}) == [] and name_factor(1.0, {"d_head": 8}) == []


def test_a_probe_that_fails_itself_is_skipped_not_fatal():
    from tinyformer.exercises.probes import findings

    component = find_component("softmax")

    def broken(ctx):
        raise RuntimeError("a probe's own bug")

    cases = component.cases()
    outputs = [torch.zeros_like(c.args[0]) for c in cases]
    expected = [torch.softmax(c.args[0], c.kwargs.get("dim", -1)) for c in cases]
    patched = type(component)(**{**component.__dict__, "probes": [broken, *component.probes]})
    assert findings(patched, None, cases, outputs, expected)  # the other probes still speak


def test_ctrl_c_while_torch_is_imported_is_one_line_and_exit_130(tmp_path):
    """`python -m tinyformer.exercises` imports tinyformer (and PyTorch, seconds) before its own
    code runs: a Ctrl-C then used to end in a KeyboardInterrupt traceback from inside torch."""
    from conftest import interrupt_while_importing_torch

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PYTHONUNBUFFERED": "1"}
    returncode, lines, err = interrupt_while_importing_torch(["tinyformer.exercises", "check", str(tmp_path)], env=env)
    assert returncode == 130, err[-3000:]
    assert lines == ["interrupted while starting (importing PyTorch); nothing was written"], lines
