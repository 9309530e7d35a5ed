"""Byte-level BPE: tinyformer (pure Python) vs Hugging Face `tokenizers` (Rust), same corpus,
same vocabulary size, same GPT-2 pre-tokenizer.

Two corpora: the King James Bible as it is, and a worst case for BPE training, about 1 MB
of its letters with every space, digit and punctuation mark removed, so the GPT-2
pre-tokenizer sees one single piece (a naive trainer rescans that piece on every merge).

Hugging Face's trainer is quadratic in the length of one piece, so each of its runs goes
to a child process that is stopped after --hf-timeout seconds and reported as a bound.

    python benchmarks/bench_tokenizer.py [--vocab 2048 4096] [--no-space-mb 1.0] [--hf-timeout 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import time

from _common import print_table, write_json

import tinyformer as tf
from tinyformer.data import load_kjv


def hf_bpe(text_lines: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text_lines, trainer)
    return tok


def _hf_worker(lines: list[str], vocab_size: int, results) -> None:
    start = time.perf_counter()
    tok = hf_bpe(lines, vocab_size)
    results.put(("train", time.perf_counter() - start))
    start = time.perf_counter()
    n_ids = sum(len(enc.ids) for enc in tok.encode_batch(lines))
    results.put(("encode", time.perf_counter() - start, n_ids))


def hf_measure(lines: list[str], vocab_size: int, timeout: float) -> dict:
    """HF train and encode times, in a child process stopped after ``timeout`` seconds:
    its trainer rewrites a word's symbol list on every merge, quadratic in a long piece."""
    results = multiprocessing.Queue()
    child = multiprocessing.Process(target=_hf_worker, args=(lines, vocab_size, results))
    child.start()
    got, deadline = {}, time.monotonic() + timeout
    while len(got) < 2:
        try:
            item = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        got[item[0]] = item[1:]
    if child.is_alive():
        child.terminate()
    child.join()
    return got


def measure(corpus: str, text: str, vocab: int, hf_timeout: float) -> dict:
    """Train and encode with both tokenizers; times in seconds, throughput in MB/s.
    A Hugging Face step that did not finish within ``hf_timeout`` is shown as a bound."""
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode())
    mb = n_bytes / 1e6
    start = time.perf_counter()
    ours = tf.BPETokenizer.train(text, vocab)
    ours_train = time.perf_counter() - start
    start = time.perf_counter()
    ours_ids = ours.encode(text)
    ours_encode = time.perf_counter() - start
    assert ours.decode(ours_ids) == text

    hf = hf_measure(lines, vocab, hf_timeout)
    stopped = f"> {hf_timeout:g} s (stopped)"
    row = {"corpus": corpus, "MB": mb, "vocab": vocab, "ours train s": ours_train}
    if "train" in hf:
        hf_train = hf["train"][0]
        row.update({"HF train s": hf_train, "train ratio": ours_train / hf_train})
    else:
        row.update({"HF train s": stopped, "train ratio": f"< {ours_train / hf_timeout:.3g}"})
    row["ours MB/s"] = mb / ours_encode
    if "encode" in hf:
        hf_encode, hf_n_ids = hf["encode"]
        row.update({"HF MB/s": mb / hf_encode, "encode ratio": ours_encode / hf_encode})
    else:
        row.update({"HF MB/s": "not reached", "encode ratio": "n/a"})
    row["ours bytes/token"] = n_bytes / len(ours_ids)
    row["HF bytes/token"] = n_bytes / hf_n_ids if "encode" in hf else "n/a"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--no-space-mb", type=float, default=1.0,
                        help="size of the one-piece corpus without spaces (0 skips it)")
    parser.add_argument("--hf-timeout", type=float, default=120.0,
                        help="seconds after which a Hugging Face run is stopped and shown as a bound")
    args = parser.parse_args()
    text = load_kjv().text
    rows = [measure("KJV", text, vocab, args.hf_timeout) for vocab in args.vocab]
    if args.no_space_mb > 0:
        letters = "".join(c for c in text if c.isalpha())
        n = int(args.no_space_mb * 1e6)
        no_space = (letters * (n // len(letters) + 1))[:n]  # all ASCII letters: n characters = n bytes
        rows.append(measure("KJV letters, no spaces (one piece)", no_space, args.vocab[0], args.hf_timeout))
    print_table(rows, ["corpus", "MB", "vocab", "ours train s", "HF train s", "train ratio", "ours MB/s", "HF MB/s",
                       "encode ratio", "ours bytes/token", "HF bytes/token"])
    command = "python benchmarks/bench_tokenizer.py"
    if args.vocab != [2048, 4096] or args.no_space_mb != 1.0 or args.hf_timeout != 120.0:
        command += f" --vocab {' '.join(map(str, args.vocab))} --no-space-mb {args.no_space_mb:g} --hf-timeout {args.hf_timeout:g}"
    write_json("tokenizer", command, {"rows": rows})


if __name__ == "__main__":
    main()
