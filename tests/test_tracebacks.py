"""Tracebacks on the published pages (cells tagged raises-exception) and in the decks name files
relative to the repository, not by the builder's absolute paths (_ext/tinyformer_book.py).
The built site is checked in test_book.py::test_published_tracebacks_hold_no_builder_paths."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))
import tinyformer_book  # noqa: E402

HOME = Path("/home/ada")
REPO = HOME / "src" / "tinyformer"
GREEN, RESET = "\x1b[0;32m", "\x1b[0m"

# What IPython 8 writes for a raising cell (ANSI colours kept, as in the notebook), with the
# home folder as "~" in some frames and spelled out in others.
TRACEBACK = [
    "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
    f"Cell {GREEN}In[5], line 1{RESET}\n{GREEN}----> 1{RESET} chars.encode('naïve café')",
    f"File {GREEN}~/src/tinyformer/tinyformer/tokenizer.py:162{RESET}, in CharTokenizer.encode(self, text)",
    f"File {GREEN}/home/ada/src/tinyformer/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py:1736{RESET}, in f",
    f"File {GREEN}/usr/lib/python3.11/json/decoder.py:337{RESET}, in JSONDecoder.decode(self, s)",
    'File "/home/ada/src/tinyformer/tinyformer/data.py", line 12, in load',
    "File /opt/conda/lib/python3.11/dist-packages/numpy/core.py:3, in g",
    "ValueError: cannot read /home/ada/corpora/kjv.txt (cwd /home/ada/src/tinyformer)",
]
EXPECTED = [
    TRACEBACK[0],
    TRACEBACK[1],
    f"File {GREEN}tinyformer/tokenizer.py:162{RESET}, in CharTokenizer.encode(self, text)",
    f"File {GREEN}<site-packages>/torch/nn/modules/module.py:1736{RESET}, in f",
    f"File {GREEN}<python>/json/decoder.py:337{RESET}, in JSONDecoder.decode(self, s)",
    'File "tinyformer/data.py", line 12, in load',
    "File <site-packages>/numpy/core.py:3, in g",
    "ValueError: cannot read ~/corpora/kjv.txt (cwd .)",
]


def clean(text: str) -> str:
    return tinyformer_book.without_builder_paths(text, root=REPO, home=HOME)


def test_builder_paths_become_relative_or_named():
    assert [clean(line) for line in TRACEBACK] == EXPECTED
    assert "/home/ada" not in clean("\n".join(TRACEBACK)) and "~/src" not in clean("\n".join(TRACEBACK))
    # A sibling folder whose name starts like the repository's is not the repository.
    assert clean("/home/ada/src/tinyformer-old/x.py") == "~/src/tinyformer-old/x.py"
    assert clean("no paths here: x / y, a/b") == "no paths here: x / y, a/b"


def _document_with(block: nodes.literal_block) -> nodes.document:
    document = new_document("<page>", get_default_settings(Parser))
    document += block
    return document


def test_error_outputs_on_a_page_are_rewritten_before_rendering():
    text = "\n".join(line for line in TRACEBACK).replace(str(REPO), str(tinyformer_book.ROOT))
    text = text.replace("~/src/tinyformer", str(tinyformer_book.ROOT))
    error = nodes.literal_block(text, text, classes=["output", "traceback"])
    code = nodes.literal_block(str(tinyformer_book.ROOT), str(tinyformer_book.ROOT), classes=["cell_input"])
    document = _document_with(error)
    document += code
    tinyformer_book._published_paths_in_outputs(None, document)
    assert str(tinyformer_book.ROOT) not in error.astext() and error.rawsource == error.astext()
    assert "tinyformer/tokenizer.py:162" in error.astext() and "<site-packages>/torch/nn/" in error.astext()
    assert code.astext() == str(tinyformer_book.ROOT)  # a cell's code is what the author wrote: untouched


def test_error_outputs_in_a_deck_notebook_are_rewritten():
    root = str(tinyformer_book.ROOT)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("chars.encode('é')", outputs=[
        nbformat.v4.new_output("error", ename="KeyError", evalue=f"no such file {root}/x.txt",
                               traceback=[f"File {root}/tinyformer/tokenizer.py:162, in encode"]),
        nbformat.v4.new_output("stream", name="stderr", text=f"{root}/tinyformer/a.py:3: UserWarning: w\n"),
        nbformat.v4.new_output("stream", name="stdout", text=f"run folder {root}/runs/x\n"),
    ])])
    tinyformer_book._published_paths_in_notebook(nb)
    error, stderr, stdout = nb.cells[0].outputs
    assert error.traceback == ["File tinyformer/tokenizer.py:162, in encode"] and error.evalue == "no such file x.txt"
    assert stderr.text == "tinyformer/a.py:3: UserWarning: w\n"
    assert stdout.text == f"run folder {root}/runs/x\n"  # printed output is the chapter's own: not rewritten
