"""Byte-level BPE: tinyformer (pure Python) vs Hugging Face `tokenizers` (Rust), same corpus,
same vocabulary size, same GPT-2 pre-tokenizer.

    python benchmarks/bench_tokenizer.py [--vocab 2048 4096]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048, 4096])
    args = parser.parse_args()
    text = load_kjv().text
    lines = text.splitlines(keepends=True)
    mb = len(text.encode()) / 1e6
    rows = []
    for vocab in args.vocab:
        start = time.perf_counter()
        ours = tf.BPETokenizer.train(text, vocab)
        ours_train = time.perf_counter() - start
        start = time.perf_counter()
        ours_ids = ours.encode(text)
        ours_encode = time.perf_counter() - start

        start = time.perf_counter()
        theirs = hf_bpe(lines, vocab)
        hf_train = time.perf_counter() - start
        start = time.perf_counter()
        hf_ids = [i for enc in theirs.encode_batch(lines) for i in enc.ids]
        hf_encode = time.perf_counter() - start
        rows.append({
            "vocab": vocab,
            "ours train s": ours_train, "HF train s": hf_train, "train ratio": ours_train / hf_train,
            "ours MB/s": mb / ours_encode, "HF MB/s": mb / hf_encode, "encode ratio": hf_encode and ours_encode / hf_encode,
            "ours bytes/token": len(text.encode()) / len(ours_ids), "HF bytes/token": len(text.encode()) / len(hf_ids),
        })
    print(f"corpus: King James Bible, {mb:.2f} MB\n")
    print_table(rows, ["vocab", "ours train s", "HF train s", "train ratio", "ours MB/s", "HF MB/s", "encode ratio",
                       "ours bytes/token", "HF bytes/token"])
    write_json("tokenizer", "python benchmarks/bench_tokenizer.py", {"corpus_mb": mb, "rows": rows})


if __name__ == "__main__":
    main()
