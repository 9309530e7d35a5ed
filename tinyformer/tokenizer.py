"""Text to token ids and back: a character tokenizer and byte-level BPE.

Byte-level BPE (Sennrich et al., 2016; GPT-2's byte variant) starts from the
256 byte values, so every string can be encoded, and repeatedly merges the most
frequent adjacent pair into a new token.
"""

from __future__ import annotations

import heapq
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import regex

__all__ = [
    "GPT2_PRETOKENIZE_PATTERN",
    "CharTokenizer",
    "BPETokenizer",
    "load_tokenizer",
    "bytes_per_token",
]

# GPT-2's pre-tokenizer: contractions, words with an optional leading space,
# numbers, punctuation runs, and whitespace. Merges never cross these pieces.
GPT2_PRETOKENIZE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKENIZE = regex.compile(GPT2_PRETOKENIZE_PATTERN)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text is not valid Unicode (a lone surrogate {text[exc.start:exc.end]!r} at index {exc.start}); "
            f"it cannot be encoded as UTF-8 bytes"
        ) from None


_NO_MERGE = float("inf")


class _WrongFormat(ValueError):
    pass


def _read_json(path: str | os.PathLike, expected_format: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read tokenizer file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _WrongFormat(f"{path} is not a {expected_format} file (format: {found!r})")
    return data


def _special_pattern(special_tokens: Iterable[str]):
    """A regex that captures special tokens, longest first (so '<|a|><|b|>' beats '<|a|>')."""
    tokens = sorted(dict.fromkeys(special_tokens), key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(t) for t in tokens) + ")") if tokens else None


def _split_on_specials(text: str, pattern) -> Iterator[tuple[str, bool]]:
    """(part, is_special) pieces of ``text``, in order, empty parts dropped."""
    if pattern is None:
        if text:
            yield text, False
        return
    for i, part in enumerate(pattern.split(text)):
        if part:
            yield part, i % 2 == 1  # split() puts captured specials at odd indices


def _merge_pair(tokens: list[int], a: int, b: int, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of the pair (a, b), left to right, by new_id."""
    merged, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i] == a and tokens[i + 1] == b:
            merged.append(new_id)
            i += 2
        else:
            merged.append(tokens[i])
            i += 1
    return merged


class CharTokenizer:
    """One token per character, with the vocabulary taken from a training text.

    Small vocabulary, long sequences: the simplest tokenizer that works.
    Characters it never saw raise a ValueError naming them.
    """

    FORMAT = "tinyformer-char-v1"

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("CharTokenizer needs distinct single characters")
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(
                f"characters not in this tokenizer's vocabulary: {unknown[:10]!r}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:
            raise ValueError(f"unknown token id {bad[0]}: this tokenizer has ids 0..{len(self.chars) - 1}")
        return "".join(self.chars[i] for i in ids)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"format": self.FORMAT, "chars": self.chars}), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        data = _read_json(path, cls.FORMAT)
        return cls(data["chars"])


class _MaxPair:
    """Heap key: heapq is a min-heap, so invert the byte comparison to pop the
    lexicographically greatest pair first among pairs of equal count."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[bytes, bytes]):
        self.key = key

    def __lt__(self, other: "_MaxPair") -> bool:
        return self.key > other.key


class BPETokenizer:
    """Byte-level BPE with special tokens.

    ids 0..255 are the raw bytes, then the special tokens, then one id per merge
    in the order it was learned. ``decode(encode(s)) == s`` for every string.
    """

    FORMAT = "tinyformer-bpe-v1"

    def __init__(self, merges: list[tuple[int, int]], special_tokens: Iterable[str] = ()):
        self.special_tokens = list(dict.fromkeys(special_tokens))
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for tok in self.special_tokens:
            self.vocab[len(self.vocab)] = _utf8(tok)
        self.special_to_id = {tok: 256 + i for i, tok in enumerate(self.special_tokens)}
        self.first_merge_id = len(self.vocab)
        # Merges are id pairs, not byte pairs: two merges may spell the same bytes.
        self.merges: list[tuple[int, int]] = []
        self._merge_rank: dict[tuple[int, int], int] = {}
        for rank, (a, b) in enumerate(merges):
            a, b = int(a), int(b)
            if a not in self.vocab or b not in self.vocab or a in self.special_to_id.values() or b in self.special_to_id.values():
                raise ValueError(f"merge {rank} ({a}, {b}) uses a token id that is not a byte or an earlier merge")
            self.vocab[self.first_merge_id + rank] = self.vocab[a] + self.vocab[b]
            self.merges.append((a, b))
            self._merge_rank.setdefault((a, b), rank)
        self._special_pattern = _special_pattern(self.special_tokens)
        self._cache: dict[str, tuple[int, ...]] = {}

    def merges_as_bytes(self) -> list[tuple[bytes, bytes]]:
        """The merges in learned order, spelled as byte strings."""
        return [(self.vocab[a], self.vocab[b]) for a, b in self.merges]

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] = (),
        progress: bool = False,
    ) -> "BPETokenizer":
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` entries.

        Special tokens are cut out first and never take part in a merge. Ties
        between equally frequent pairs go to the lexicographically greater
        ``(bytes_a, bytes_b)``, so training is deterministic.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the 256 bytes plus {len(special_tokens)} special tokens"
            )
        word_counts: Counter[str] = Counter()
        for piece, special in _split_on_specials(text, _special_pattern(special_tokens)):
            if not special:
                word_counts.update(_PRETOKENIZE.findall(piece))
        words = [list(_utf8(w)) for w in word_counts]
        counts = list(word_counts.values())
        token_bytes: dict[int, bytes] = {i: bytes([i]) for i in range(256)}

        pair_counts: Counter[tuple[int, int]] = Counter()
        pair_words: dict[tuple[int, int], set[int]] = {}
        for w, (tokens, n) in enumerate(zip(words, counts)):
            for pair in zip(tokens, tokens[1:]):
                pair_counts[pair] += n
                pair_words.setdefault(pair, set()).add(w)

        def heap_entry(pair):
            return (-pair_counts[pair], _MaxPair((token_bytes[pair[0]], token_bytes[pair[1]])), pair)

        heap = [heap_entry(p) for p in pair_counts]
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        next_id = 256 + len(special_tokens)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_merges, desc="BPE merges", unit="merge")
        while len(merges) < n_merges and heap:
            neg_count, _, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg_count or neg_count == 0:
                continue  # stale entry: this pair's count changed since it was pushed
            a, b = pair
            new_id = next_id
            next_id += 1
            token_bytes[new_id] = token_bytes[a] + token_bytes[b]
            merges.append(pair)
            changed: set[tuple[int, int]] = set()
            for w in pair_words.pop(pair, ()):
                tokens, n = words[w], counts[w]
                if not any(x == a and y == b for x, y in zip(tokens, tokens[1:])):
                    continue
                for old in zip(tokens, tokens[1:]):
                    pair_counts[old] -= n
                    changed.add(old)
                merged = _merge_pair(tokens, a, b, new_id)
                words[w] = merged
                for new in zip(merged, merged[1:]):
                    pair_counts[new] += n
                    pair_words.setdefault(new, set()).add(w)
                    changed.add(new)
            for p in changed:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, heap_entry(p))
                else:
                    del pair_counts[p]
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if len(merges) < n_merges:
            warnings.warn(
                f"the training text ran out of pairs to merge after {len(merges)} merges: "
                f"vocabulary has {256 + len(special_tokens) + len(merges)} tokens, not the {vocab_size} asked for",
                stacklevel=2,
            )
        return cls(merges, special_tokens)

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _encode_pretoken(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        tokens = list(_utf8(piece))
        while len(tokens) > 1:
            # Apply the earliest-learned merge present, as training did.
            rank = min(self._merge_rank.get(pair, _NO_MERGE) for pair in zip(tokens, tokens[1:]))
            if rank == _NO_MERGE:
                break
            (a, b), new_id = self.merges[rank], self.first_merge_id + rank
            tokens = _merge_pair(tokens, a, b, new_id)
        result = tuple(tokens)
        if len(self._cache) > 200_000:  # bound memory on huge, diverse inputs
            self._cache.clear()
        self._cache[piece] = result
        return result

    def _pieces(self, text: str) -> Iterator[tuple[str, bool]]:
        """(piece, is_special) in order: special tokens whole, the rest pre-tokenized."""
        for part, special in _split_on_specials(text, self._special_pattern):
            if special:
                yield part, True
            else:
                for m in _PRETOKENIZE.finditer(part):
                    yield m.group(), False

    def encode(self, text: str) -> list[int]:
        """Text -> list of token ids."""
        ids: list[int] = []
        for piece, special in self._pieces(text):
            if special:
                ids.append(self.special_to_id[piece])
            else:
                ids.extend(self._encode_pretoken(piece))
        return ids

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Encode a stream of text (lines, a file handle) lazily, in bounded memory.

        Yields exactly ``encode("".join(chunks))``: text is held back from the
        end of the buffer until no special token or pre-token can straddle the cut.
        """
        hold = max((len(t) for t in self.special_tokens), default=1)
        buffer = ""
        for chunk in chunks:
            buffer += chunk
            cut = self._safe_cut(buffer, hold)
            if cut:
                yield from self.encode(buffer[:cut])
                buffer = buffer[cut:]
        if buffer:
            yield from self.encode(buffer)

    def _safe_cut(self, buffer: str, hold: int) -> int:
        """The largest index where the buffer can be split without changing the encoding:
        the start of the last pre-token (it may still grow), and at least ``hold``
        characters before the end (a special token may still be arriving)."""
        limit = len(buffer) - hold
        if limit <= 0:
            return 0
        cut = 0
        pos = 0
        for part, special in _split_on_specials(buffer, self._special_pattern):
            if special:
                pos += len(part)
                if pos <= limit:
                    cut = pos
                continue
            for m in _PRETOKENIZE.finditer(part):
                start = pos + m.start()
                if start <= limit:
                    cut = max(cut, start)
            pos += len(part)
        return cut

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text. Bytes that do not form valid UTF-8 become U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self.vocab:
                raise ValueError(f"unknown token id {i}: this tokenizer has ids 0..{len(self.vocab) - 1}")
            out.append(self.vocab[i])
        return b"".join(out).decode("utf-8", errors="replace")

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each token as readable text (for tables and plot labels)."""
        return [self.vocab[int(i)].decode("utf-8", errors="replace") for i in ids]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        data = {
            "format": self.FORMAT,
            "special_tokens": self.special_tokens,
            "merges": [list(pair) for pair in self.merges],
        }
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        data = _read_json(path, cls.FORMAT)
        try:
            merges = [(int(a), int(b)) for a, b in data["merges"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed merges list: {exc}") from exc
        return cls(merges, data.get("special_tokens", []))


def load_tokenizer(path: str | os.PathLike) -> CharTokenizer | BPETokenizer:
    """Load either tokenizer from a file written by its ``save``."""
    for cls in (BPETokenizer, CharTokenizer):
        try:
            return cls.load(path)
        except _WrongFormat:
            continue
    raise ValueError(f"{path} is neither a {BPETokenizer.FORMAT} nor a {CharTokenizer.FORMAT} file")


def bytes_per_token(tokenizer, text: str) -> float:
    """Compression: UTF-8 bytes of ``text`` per token. Higher means shorter sequences."""
    n = len(tokenizer.encode(text))
    return len(text.encode("utf-8")) / n if n else 0.0
