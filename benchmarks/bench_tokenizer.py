"""Byte-level BPE: tinyformer (pure Python) vs Hugging Face `tokenizers` (Rust), same corpus,
same vocabulary size, same GPT-2 pre-tokenizer.

Two corpora: the King James Bible as it is, and a worst case for BPE training, about 1 MB
of its letters with every space, digit and punctuation mark removed, so the GPT-2
pre-tokenizer sees one single piece (a naive trainer rescans that piece on every merge).

    python benchmarks/bench_tokenizer.py [--vocab 2048 4096] [--no-space-mb 1.0]
"""

from __future__ import annotations

import argparse
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


def measure(corpus: str, text: str, vocab: int) -> dict:
    """Train and encode with both tokenizers; times in seconds, throughput in MB/s."""
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode())
    start = time.perf_counter()
    ours = tf.BPETokenizer.train(text, vocab)
    ours_train = time.perf_counter() - start
    start = time.perf_counter()
    ours_ids = ours.encode(text)
    ours_encode = time.perf_counter() - start
    assert ours.decode(ours_ids) == text

    start = time.perf_counter()
    theirs = hf_bpe(lines, vocab)
    hf_train = time.perf_counter() - start
    start = time.perf_counter()
    hf_ids = [i for enc in theirs.encode_batch(lines) for i in enc.ids]
    hf_encode = time.perf_counter() - start
    return {
        "corpus": corpus, "MB": n_bytes / 1e6, "vocab": vocab,
        "ours train s": ours_train, "HF train s": hf_train, "train ratio": ours_train / hf_train,
        "ours MB/s": n_bytes / 1e6 / ours_encode, "HF MB/s": n_bytes / 1e6 / hf_encode,
        "encode ratio": ours_encode / hf_encode,
        "ours bytes/token": n_bytes / len(ours_ids), "HF bytes/token": n_bytes / len(hf_ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--no-space-mb", type=float, default=1.0,
                        help="size of the one-piece corpus without spaces (0 skips it)")
    args = parser.parse_args()
    text = load_kjv().text
    rows = [measure("KJV", text, vocab) for vocab in args.vocab]
    if args.no_space_mb > 0:
        letters = "".join(c for c in text if c.isalpha())
        n = int(args.no_space_mb * 1e6)
        no_space = (letters * (n // len(letters) + 1))[:n]  # all ASCII letters: n characters = n bytes
        rows.append(measure("KJV letters, no spaces (one piece)", no_space, args.vocab[0]))
    print_table(rows, ["corpus", "MB", "vocab", "ours train s", "HF train s", "train ratio", "ours MB/s", "HF MB/s",
                       "encode ratio", "ours bytes/token", "HF bytes/token"])
    command = "python benchmarks/bench_tokenizer.py"
    if args.vocab != [2048, 4096] or args.no_space_mb != 1.0:
        command += f" --vocab {' '.join(map(str, args.vocab))} --no-space-mb {args.no_space_mb:g}"
    write_json("tokenizer", command, {"rows": rows})


if __name__ == "__main__":
    main()
