"""Text to token ids and back: a character tokenizer and byte-level BPE.

Byte-level BPE (Sennrich et al., 2016; GPT-2's byte variant) starts from the
256 byte values, so every string can be encoded, and repeatedly merges the most
frequent adjacent pair into a new token.

Taught in: Text to tokens (book/tokens.md)
"""

from __future__ import annotations

import heapq
import json
import operator
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

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


class _WrongFormat(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {repeated!r} appears more than once in one JSON object")
    return data


_REMEDY = ("restore it from a copy, or save the tokenizer again "
           "(a training run's tokenizer.json: start the run again with --overwrite)")


def _read_json(path: str | os.PathLike) -> dict:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read tokenizer file {path}: {exc}") from exc
    not_ours = f"cannot read tokenizer file {path}: it is not a tokenizer file written by tinyformer"
    if not raw.strip():
        raise ValueError(f"{not_ours} (the file is empty); {_REMEDY}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{not_ours} (not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}); {_REMEDY}") from None
    try:
        # json.loads would keep the last of two equal keys and drop the other in silence
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        cut_short = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        how = "it ends too early" if cut_short else f"{exc.msg}, line {exc.lineno} column {exc.colno}"
        raise ValueError(f"{not_ours} (not valid JSON: {how}); {_REMEDY}") from None
    except ValueError as exc:  # a repeated key
        raise ValueError(f"cannot read tokenizer file {path}: {exc}; {_REMEDY}") from None
    if not isinstance(data, dict):
        raise _WrongFormat(f"{path} is not a tokenizer file: it holds a JSON {type(data).__name__}, not an object")
    return data


def _check_fields(path, data: dict, expected_format: str, fields: dict[str, str]) -> None:
    """The format tag, then exactly the keys ``fields`` names (key -> what it holds)."""
    if "format" not in data:
        raise _WrongFormat(f"{path} is not a {expected_format} file: it has no 'format' key")
    if data["format"] != expected_format:
        raise _WrongFormat(f"{path} is not a {expected_format} file (format: {data['format']!r})")
    for key, what in fields.items():
        if key not in data:
            raise ValueError(f"{path}: missing required key {key!r} ({what})")
    unexpected = sorted(set(data) - set(fields) - {"format"})
    if unexpected:
        raise ValueError(f"{path}: unexpected key(s) {unexpected} in a {expected_format} file")


def _check_list(path, value, key: str, what: str) -> list:
    if not isinstance(value, list):
        kind = "a string" if isinstance(value, str) else f"{type(value).__name__}"
        raise ValueError(f"{path}: {key!r} must be a list of {what}, got {kind} {value!r:.60}")
    return value


def _first_repeat(items: list) -> tuple[int, int] | None:
    """(first index, later index) of the first value that occurs twice, or None."""
    seen: dict = {}
    for i, item in enumerate(items):
        key = tuple(item) if isinstance(item, list) else item
        if key in seen:
            return seen[key], i
        seen[key] = i
    return None


def _load_special_tokens(path, data: dict) -> list[str]:
    tokens = _check_list(path, data["special_tokens"], "special_tokens", "strings")
    try:
        return _check_special_tokens(tokens)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _special_pattern(special_tokens: Iterable[str]):
    """A regex that captures special tokens, longest first (so '<|a|><|b|>' beats '<|a|>')."""
    tokens = sorted(dict.fromkeys(special_tokens), key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(t) for t in tokens) + ")") if tokens else None


_EVERY_SPECIAL = object()  # BPETokenizer._pieces: split on every special token
_STREAM_STEP = 256  # encode_iterable: characters gathered before searching for a cut


class _SpecialRules(NamedTuple):
    split: object  # regex of the allowed special tokens (None: none allowed)
    longest: int  # length of the longest allowed special token
    prefixes: frozenset  # every proper prefix of an allowed special token
    refused: object  # regex of the disallowed special tokens (None: none)
    refused_longest: int


def _split_on_specials(text: str, pattern) -> Iterator[tuple[str, bool]]:
    """(part, is_special) pieces of ``text``, in order, empty parts dropped."""
    if pattern is None:
        if text:
            yield text, False
        return
    for i, part in enumerate(pattern.split(text)):
        if part:
            yield part, i % 2 == 1  # split() puts captured specials at odd indices


def _token_ids(ids: Iterable[int]) -> list[int]:
    """``ids`` as Python ints. Integers of any kind (numpy's, a 0-d integer tensor) are taken;
    floats, bools and strings are refused, not rounded or parsed: ``decode([104.7])`` must not
    quietly read token 104."""
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"ids must be a sequence of integer token ids, got a {type(ids).__name__} {ids!r:.60}")
    out = []
    for pos, value in enumerate(ids):
        if not (isinstance(value, bool) or "bool" in str(getattr(value, "dtype", ""))):  # numpy's and torch's bools
            try:
                out.append(operator.index(value))
                continue
            except TypeError:
                pass
        raise ValueError(f"token ids must be integers, but ids[{pos}] is {value!r:.60} ({type(value).__name__})")
    return out


def _special_option(value, name: str):
    """``allowed_special`` or ``disallowed_special``: "all", or the tokens as a frozenset."""
    if isinstance(value, str) and value == "all":
        return "all"
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be 'all' or a collection of special tokens, got the string {value!r}")
    try:
        return frozenset(value)
    except TypeError:
        raise ValueError(f"{name} must be 'all' or a collection of special tokens, got {type(value).__name__}") from None


def _refuse_special_options(allowed_special, disallowed_special) -> None:
    """A tokenizer without special tokens takes the options of ``BPETokenizer.encode`` too (one
    call fits both kinds), but cannot allow or refuse a token it does not have."""
    for name, value in (("allowed_special", allowed_special), ("disallowed_special", disallowed_special)):
        option = _special_option(value, name)
        if option != "all" and option:
            raise ValueError(f"{name} names {sorted(option, key=repr)[0]!r}, but this tokenizer has no special tokens")


class CharTokenizer:
    """One token per character, with the vocabulary taken from a training text.

    Small vocabulary, long sequences: the simplest tokenizer that works.
    Characters it never saw raise a ValueError naming them.
    """

    FORMAT = "tinyformer-char-v1"

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        for i, c in enumerate(self.chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer needs single characters, but entry {i} is {c!r}")
        repeat = _first_repeat(self.chars)
        if repeat:
            raise ValueError(
                f"CharTokenizer needs distinct characters, but {self.chars[repeat[1]]!r} is at {repeat[0]} and {repeat[1]}"
            )
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, *, allowed_special=(), disallowed_special="all") -> list[int]:
        """Text -> one id per character. It has no special tokens; ``allowed_special`` and
        ``disallowed_special`` are taken so that code can call either tokenizer the same way."""
        _refuse_special_options(allowed_special, disallowed_special)
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(
                f"characters not in this tokenizer's vocabulary: {unknown[:10]!r}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = _token_ids(ids)
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:
            raise ValueError(f"unknown token id {bad[0]}: this tokenizer has ids 0..{len(self.chars) - 1}")
        return "".join(self.chars[i] for i in ids)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"format": self.FORMAT, "chars": self.chars}), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        data = _read_json(path)
        _check_fields(path, data, cls.FORMAT, {"chars": "a list of single characters, one per token id"})
        chars = _check_list(path, data["chars"], "chars", "single characters")
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"{path}: chars[{i}] must be a single character, got {c!r}")
        repeat = _first_repeat(chars)
        if repeat:
            raise ValueError(f"{path}: chars[{repeat[1]}] {chars[repeat[1]]!r} repeats chars[{repeat[0]}]")
        return cls(chars)


class _MaxPair:
    """Heap key: heapq is a min-heap, so invert the byte comparison to pop the
    lexicographically greatest pair first among pairs of equal count."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[bytes, bytes]):
        self.key = key

    def __lt__(self, other: "_MaxPair") -> bool:
        return self.key > other.key


class _PairIndex:
    """Every adjacent token pair of the training text, counted and located.

    All distinct pre-tokens sit in one doubly linked list of cells (``sym`` the
    token id, ``prv``/``nxt`` the neighbours inside the same pre-token, -1 at its
    ends, ``weight`` how often the pre-token occurs). ``where[pair]`` holds the
    cells where the pair starts. A merge visits only the cells of the merged
    pair and fixes the counts of the pairs on either side, so training costs
    about the number of tokens it removes, not (merges x text length): a piece of
    a million letters with no space in it is no slower than a million words.
    """

    def __init__(self, word_counts: Counter):
        self.sym: list[int] = []
        self.prv: list[int] = []
        self.nxt: list[int] = []
        self.weight: list[int] = []
        self.counts: Counter[tuple[int, int]] = Counter()
        self.where: dict[tuple[int, int], set[int]] = {}
        for word, n in word_counts.items():
            data = _utf8(word)
            start = len(self.sym)
            for i, byte in enumerate(data):
                self.sym.append(byte)
                self.prv.append(start + i - 1 if i else -1)
                self.nxt.append(start + i + 1 if i + 1 < len(data) else -1)
                self.weight.append(n)
            for i in range(start, start + len(data) - 1):
                self._add((data[i - start], data[i - start + 1]), i, n)

    def _add(self, pair: tuple[int, int], cell: int, n: int) -> None:
        self.counts[pair] += n
        self.where.setdefault(pair, set()).add(cell)

    def _remove(self, pair: tuple[int, int], cell: int, n: int) -> None:
        self.counts[pair] -= n
        cells = self.where.get(pair)
        if cells is not None:
            cells.discard(cell)

    def merge(self, pair: tuple[int, int], new_id: int) -> set[tuple[int, int]]:
        """Replace every occurrence of ``pair``, left to right without overlaps
        (``a a a`` -> ``aa a``), by ``new_id``. Returns the pairs whose count changed."""
        a, b = pair
        sym, prv, nxt = self.sym, self.prv, self.nxt
        changed = {pair}
        for i in sorted(self.where.pop(pair, ())):  # cell order is text order inside each pre-token
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:
                continue  # an overlapping occurrence just before this one took its first token
            n, left, right = self.weight[i], prv[i], nxt[j]
            if left >= 0:
                self._remove((sym[left], a), left, n)
                self._add((sym[left], new_id), left, n)
                changed.update(((sym[left], a), (sym[left], new_id)))
            if right >= 0:
                self._remove((b, sym[right]), j, n)
                self._add((new_id, sym[right]), i, n)
                changed.update(((b, sym[right]), (new_id, sym[right])))
            self.counts[pair] -= n
            sym[i], sym[j] = new_id, -1  # cell j leaves the list
            nxt[i] = right
            if right >= 0:
                prv[right] = i
        return changed


def _check_id(value, what: str) -> int:
    # bool is an int subclass and float ids round silently: both are refused
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer token id, got {value!r} ({type(value).__name__})")
    return value


def _check_special_tokens(special_tokens) -> list[str]:
    """Distinct non-empty strings, none a single byte (that byte could no longer be text), as a
    list; an error names the entry (for a constructor's argument and a tokenizer file's field alike)."""
    if isinstance(special_tokens, (str, bytes)):
        raise ValueError(f"special_tokens must be a list of strings, got a single {type(special_tokens).__name__} {special_tokens!r}")
    tokens = list(special_tokens)
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"special_tokens[{i}] must be a non-empty string, got {tok!r}")
        if len(_utf8(tok)) == 1:
            raise ValueError(f"special token {tok!r} is a single byte: it would make that byte unencodable as text")
    repeat = _first_repeat(tokens)
    if repeat:
        raise ValueError(f"special_tokens[{repeat[1]}] {tokens[repeat[1]]!r} repeats special_tokens[{repeat[0]}]")
    return tokens


class BPETokenizer:
    """Byte-level BPE with special tokens.

    Built by ``train`` (or from its saved merges), ids 0..255 are the raw bytes,
    then the special tokens, then one id per merge in the order it was learned.
    ``from_vocab`` instead takes someone else's vocabulary and merges and keeps
    their ids. Either way ``decode(encode(s)) == s`` for every string (one that spells
    a special token is refused unless ``encode`` is told what to do with it: see ``encode``).
    """

    FORMAT = "tinyformer-bpe-v1"  # our own id layout: merges as id pairs
    VOCAB_FORMAT = "tinyformer-bpe-vocab-v1"  # any id layout: vocabulary and merges as bytes (hex)

    def __init__(self, merges: list[tuple[int, int]], special_tokens: Iterable[str] = ()):
        special_tokens = _check_special_tokens(special_tokens)
        vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for tok in special_tokens:
            vocab[len(vocab)] = _utf8(tok)
        special_to_id = {tok: 256 + i for i, tok in enumerate(special_tokens)}
        first_merge_id = len(vocab)
        # Merges are id pairs, not byte pairs: two merges may spell the same bytes.
        id_merges, results = [], []
        for rank, pair in enumerate(merges):
            if isinstance(pair, (str, bytes)) or len(pair) != 2:
                raise ValueError(f"merge {rank} must be a pair of token ids, got {pair!r}")
            a, b = (_check_id(x, f"merge {rank} ({pair[0]!r}, {pair[1]!r}): each id") for x in pair)
            for x in (a, b):
                if x not in vocab or x in special_to_id.values():
                    raise ValueError(f"merge {rank} ({a}, {b}) uses token id {x}, which is not a byte or an earlier merge")
            vocab[first_merge_id + rank] = vocab[a] + vocab[b]
            id_merges.append((a, b))
            results.append(first_merge_id + rank)
        self._setup(vocab, special_tokens, special_to_id, id_merges, results, list(range(256)))
        self.first_merge_id = first_merge_id

    @classmethod
    def from_vocab(
        cls,
        vocab: Mapping[int, bytes],
        merges: Iterable[tuple[bytes, bytes]],
        special_tokens: Iterable[str] = (),
    ) -> "BPETokenizer":
        """A tokenizer from someone else's vocabulary and merges, keeping their ids.

        ``vocab`` maps each id to its bytes; every single byte must be in it (or some
        text could not be encoded) and no two ids may spell the same bytes.
        ``merges`` are byte pairs in priority order (GPT-2's ``merges.txt``): each
        part is a single byte or the result of an earlier merge, and the joined
        bytes are in ``vocab``. Each special token (a string) must be in ``vocab``
        as its UTF-8 bytes and is never split. Vocabulary entries that no merge
        makes are kept: ``decode`` reads them, ``encode`` never produces them.
        """
        if not isinstance(vocab, Mapping):
            raise ValueError(f"vocab must be a mapping from token id to bytes, got {type(vocab).__name__}")
        vocab = dict(vocab)
        id_of: dict[bytes, int] = {}
        for i, data in vocab.items():
            _check_id(i, "each vocab key")
            if i < 0:
                raise ValueError(f"vocab ids must be >= 0, got {i}")
            if not isinstance(data, bytes) or not data:
                raise ValueError(f"vocab[{i}] must be non-empty bytes, got {data!r}")
            if data in id_of:
                raise ValueError(f"ids {id_of[data]} and {i} both spell {data!r}: each token's bytes must be unique")
            id_of[data] = i
        missing = [b for b in range(256) if bytes([b]) not in id_of]
        if missing:
            shown = ", ".join(f"0x{b:02x}" for b in missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ValueError(
                f"vocab lacks {len(missing)} single bytes ({shown}): byte-level BPE needs all 256 to encode any text"
            )
        special_tokens = _check_special_tokens(special_tokens)
        special_to_id = {}
        for tok in special_tokens:
            data = _utf8(tok)
            if data not in id_of:
                raise ValueError(f"special token {tok!r} is not in the vocabulary: give it an id in vocab")
            special_to_id[tok] = id_of[data]
        made = {id_of[bytes([b])] for b in range(256)}  # ids a merge may use so far
        id_merges, results, seen = [], [], {}
        for rank, pair in enumerate(merges):
            if isinstance(pair, (str, bytes)) or len(pair) != 2 or not all(isinstance(x, bytes) for x in pair):
                raise ValueError(f"merge {rank} must be a pair of bytes, got {pair!r}")
            left, right = pair
            for part in (left, right):
                if part not in id_of:
                    raise ValueError(f"merge {rank} ({left!r}, {right!r}) uses {part!r}, which is not in the vocabulary")
                if id_of[part] not in made:
                    raise ValueError(
                        f"merge {rank} ({left!r}, {right!r}) uses {part!r} (id {id_of[part]}), which is neither a "
                        f"single byte nor made by an earlier merge, so the merge could never apply"
                    )
            if pair in seen:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) repeats merge {seen[pair]}")
            seen[pair] = rank
            result = id_of.get(left + right)
            if result is None:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) makes {left + right!r}, which is not in the vocabulary")
            if result in special_to_id.values():
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) makes special token {(left + right).decode(errors='replace')!r}")
            id_merges.append((id_of[left], id_of[right]))
            results.append(result)
            made.add(result)
        tok = cls.__new__(cls)
        tok._setup(vocab, special_tokens, special_to_id, id_merges, results, [id_of[bytes([b])] for b in range(256)])
        tok.first_merge_id = None  # ids follow the given vocabulary, not our layout
        return tok

    def _setup(self, vocab, special_tokens, special_to_id, merges, merge_results, byte_ids) -> None:
        self.vocab: dict[int, bytes] = vocab
        self.special_tokens: list[str] = special_tokens
        self.special_to_id: dict[str, int] = special_to_id
        self.merges: list[tuple[int, int]] = merges  # (left id, right id), in priority order
        self._merge_results: list[int] = merge_results  # the id each merge makes
        self._byte_ids: list[int] = byte_ids  # the id of each byte value
        self._merge_rank: dict[tuple[int, int], int] = {}
        for rank, pair in enumerate(merges):
            if pair in self._merge_rank:
                raise ValueError(f"merge {rank} {pair} repeats merge {self._merge_rank[pair]}")
            self._merge_rank[pair] = rank
        self._special_pattern = _special_pattern(self.special_tokens)
        self._cache: dict[str, tuple[int, ...]] = {}
        self._rules_cache: dict[tuple, _SpecialRules] = {}

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
        ``(bytes_a, bytes_b)``, so training is deterministic. ``progress=True``
        shows a tqdm bar of the merges. Time grows about linearly with the text
        (see ``_PairIndex``), long pieces without whitespace included.
        """
        special_tokens = _check_special_tokens(special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the 256 bytes plus {len(special_tokens)} special tokens"
            )
        word_counts: Counter[str] = Counter()
        for piece, special in _split_on_specials(text, _special_pattern(special_tokens)):
            if not special:
                word_counts.update(_PRETOKENIZE.findall(piece))
        index = _PairIndex(word_counts)
        token_bytes: dict[int, bytes] = {i: bytes([i]) for i in range(256)}

        def heap_entry(pair):
            return (-index.counts[pair], _MaxPair((token_bytes[pair[0]], token_bytes[pair[1]])), pair)

        heap = [heap_entry(p) for p in index.counts]
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        next_id = 256 + len(special_tokens)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_merges, desc="BPE merges", unit="merge")
        while len(merges) < n_merges and heap:
            neg_count, _, pair = heapq.heappop(heap)
            if index.counts.get(pair, 0) != -neg_count or neg_count == 0:
                continue  # stale entry: this pair's count changed since it was pushed
            new_id = next_id
            next_id += 1
            token_bytes[new_id] = token_bytes[pair[0]] + token_bytes[pair[1]]
            merges.append(pair)
            for p in index.merge(pair, new_id):
                if index.counts[p] > 0:
                    heapq.heappush(heap, heap_entry(p))
                else:
                    del index.counts[p]
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
        """Apply the merges to one pre-token, earliest-learned first, as training did.

        The tokens form a linked list and a heap holds (rank, position) of every
        adjacent pair that has a merge, so each step finds the earliest merge in
        O(log n) instead of rescanning the piece: a megabyte-long piece without
        spaces encodes in about n log n. Equal ranks pop left to right, which
        merges ``a a a`` as ``aa a``, like one left-to-right pass.
        """
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        sym = [self._byte_ids[byte] for byte in _utf8(piece)]
        n = len(sym)
        nxt = list(range(1, n)) + [-1]
        prv = list(range(-1, n - 1))
        rank_of = self._merge_rank
        heap = [(rank_of[pair], i) for i, pair in enumerate(zip(sym, sym[1:])) if pair in rank_of]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if sym[i] < 0 or j < 0 or (sym[i], sym[j]) != self.merges[rank]:
                continue  # stale: a neighbour merged since this entry was pushed
            new_id = self._merge_results[rank]
            sym[i], sym[j] = new_id, -1
            nxt[i] = nxt[j]
            if nxt[i] >= 0:
                prv[nxt[i]] = i
                r = rank_of.get((new_id, sym[nxt[i]]))
                if r is not None:
                    heapq.heappush(heap, (r, i))
            if prv[i] >= 0:
                r = rank_of.get((sym[prv[i]], new_id))
                if r is not None:
                    heapq.heappush(heap, (r, prv[i]))
        result = tuple(t for t in sym if t >= 0)
        if len(piece) <= 1000:  # caching huge one-off pieces would only hold memory
            if len(self._cache) > 200_000:  # bound memory on huge, diverse inputs
                self._cache.clear()
            self._cache[piece] = result
        return result

    def _pieces(self, text: str, split=_EVERY_SPECIAL) -> Iterator[tuple[str, bool]]:
        """(piece, is_special) in order: the special tokens ``split`` matches (by default every
        one) whole, the rest pre-tokenized."""
        for part, special in _split_on_specials(text, self._special_pattern if split is _EVERY_SPECIAL else split):
            if special:
                yield part, True
            else:
                for m in _PRETOKENIZE.finditer(part):
                    yield m.group(), False

    def _special_rules(self, allowed_special, disallowed_special) -> _SpecialRules:
        """How ``encode`` treats special-token strings in the text, checked and compiled once."""
        key = (_special_option(allowed_special, "allowed_special"), _special_option(disallowed_special, "disallowed_special"))
        rules = self._rules_cache.get(key)
        if rules is not None:
            return rules
        every = frozenset(self.special_to_id)
        for name, tokens in zip(("allowed_special", "disallowed_special"), key):
            for tok in sorted(every if tokens == "all" else tokens, key=repr):
                if tok not in every:
                    raise ValueError(f"{name} names {tok!r}, which is not a special token of this tokenizer "
                                     f"(its special tokens: {self.special_tokens})")
        allowed = every if key[0] == "all" else key[0]
        refused = every - allowed if key[1] == "all" else key[1]
        if refused & allowed:
            raise ValueError(f"special token {min(refused & allowed)!r} is in both allowed_special and disallowed_special")
        rules = _SpecialRules(
            split=_special_pattern(sorted(allowed)),
            longest=max(map(len, allowed), default=0),
            prefixes=frozenset(tok[:i] for tok in allowed for i in range(1, len(tok))),
            refused=_special_pattern(sorted(refused)),
            refused_longest=max(map(len, refused), default=0),
        )
        if len(self._rules_cache) < 64:
            self._rules_cache[key] = rules
        return rules

    @staticmethod
    def _special_in_text(tok: str, index: int) -> ValueError:
        return ValueError(
            f"the text holds the special token {tok!r} (at index {index}), and text is not turned into control "
            f"tokens unless asked: pass allowed_special={{{tok!r}}} (or allowed_special='all') to encode it as the "
            f"special token, or disallowed_special=() to encode it as ordinary text"
        )

    def _encode_text(self, text: str, split) -> list[int]:
        ids: list[int] = []
        for piece, special in self._pieces(text, split):
            if special:
                ids.append(self.special_to_id[piece])
            else:
                ids.extend(self._encode_pretoken(piece))
        return ids

    def encode(self, text: str, *, allowed_special=(), disallowed_special="all") -> list[int]:
        """Text -> list of token ids.

        Text that spells a special token (``"<|endoftext|>"`` typed by a user, or found in a
        scraped page) raises ValueError by default instead of becoming the control token, as in
        tiktoken. ``allowed_special`` ("all" or a set of tokens) names the special tokens the
        text may hold: each becomes its one id. ``disallowed_special`` ("all", the default,
        means every special token not allowed) names those that raise; one neither allowed nor
        disallowed (``disallowed_special=()``) is encoded as ordinary text, byte by byte.
        """
        rules = self._special_rules(allowed_special, disallowed_special)
        if rules.refused is not None:
            m = rules.refused.search(text)
            if m:
                raise self._special_in_text(m.group(), m.start())
        return self._encode_text(text, rules.split)

    def encode_iterable(self, chunks: Iterable[str], *, allowed_special=(), disallowed_special="all") -> Iterator[int]:
        """Encode a stream of text (lines, a file handle) lazily, in bounded memory.

        Yields exactly ``encode("".join(chunks), ...)``, whatever the chunks: text is held
        back until no special token or pre-token can straddle the cut. A disallowed special
        token raises when the chunk that completes it arrives (after the ids before it).
        Memory is about twice the longest pre-token plus a few hundred characters; time is
        linear in the text, one-character chunks included: the buffer is searched for a cut
        only each time it has doubled since the last search (plus ``_STREAM_STEP`` characters).
        """
        rules = self._special_rules(allowed_special, disallowed_special)
        refused, keep = rules.refused, rules.refused_longest - 1
        recent, seen = "", 0  # the stream's last `keep` characters, where a refused token may have begun
        pending: list[str] = []  # text not yet encoded: what the last search kept, then new chunks
        size, next_search = 0, _STREAM_STEP
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise ValueError(f"encode_iterable needs chunks of text (str), got {type(chunk).__name__} {chunk!r:.40}")
            if refused is not None:
                window = recent + chunk
                m = refused.search(window)
                if m:
                    raise self._special_in_text(m.group(), seen - len(recent) + m.start())
                recent = window[-keep:] if keep else ""
            seen += len(chunk)
            pending.append(chunk)
            size += len(chunk)
            if size >= next_search:
                buffer = "".join(pending)
                cut, ids = self._safe_cut(buffer, rules)
                yield from ids
                pending = [buffer[cut:]]
                size = len(pending[0])
                next_search = 2 * size + _STREAM_STEP
        tail = "".join(pending)
        if tail:
            yield from self._encode_text(tail, rules.split)

    def _safe_cut(self, buffer: str, rules: _SpecialRules) -> tuple[int, list[int]]:
        """``(c, ids)``: the largest index ``c`` (found in one pass) up to which the encoding is
        final, and those ids: whatever text follows, ``encode(buffer + more)`` starts with ``ids``
        and goes on as ``encode(buffer[c:] + more)``.

        ``q``, the first index where an allowed special token may still be arriving (the rest of
        the buffer is a proper prefix of one), ends what is known: special-token matches that
        start before ``q`` are final. The open part (ordinary text not yet ended by a final
        special token) is known only up to ``q`` and may still grow; in it a pre-token that ends
        at least 2 characters before ``q`` is final, because the pre-tokenizer decides a piece
        from its own characters and at most the next one (``\\s+(?!\\S)`` looks one character
        past the whitespace it takes) or, for a contraction, two after its start. Those pieces
        are encoded as found: pre-tokenizing ``buffer[:c]`` alone could differ (``" \\n"`` is one
        piece at the end of a text, two before a letter).
        """
        n = len(buffer)
        q = n
        for p in range(max(0, n - rules.longest + 1), n):
            if buffer[p:] in rules.prefixes:
                q = p
                break
        ids: list[int] = []
        cut = pos = 0
        for part, special in _split_on_specials(buffer, rules.split):
            start, pos = pos, pos + len(part)
            if special:
                if start >= q:
                    break
                ids.append(self.special_to_id[part])
                cut = pos
            elif pos < q:  # ended by a final special token
                ids.extend(self._encode_text(part, None))
                cut = pos
            else:
                known = buffer[start:q]
                cut = start
                for m in _PRETOKENIZE.finditer(known):
                    if m.end() > len(known) - 2:
                        break
                    ids.extend(self._encode_pretoken(m.group()))
                    cut = start + m.end()
                break
        return cut, ids

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text. Bytes that do not form valid UTF-8 become U+FFFD. Ids must be
        integers (Python's, numpy's, integer tensors); a float, bool or string is refused."""
        out = []
        for i in _token_ids(ids):
            if i not in self.vocab:
                raise ValueError(
                    f"unknown token id {i}: this tokenizer has {len(self.vocab)} ids, "
                    f"from {min(self.vocab)} to {max(self.vocab)}"
                    + ("" if len(self.vocab) == max(self.vocab) + 1 else ", with gaps")
                )
            out.append(self.vocab[i])
        return b"".join(out).decode("utf-8", errors="replace")

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each token as readable text (for tables and plot labels)."""
        return [self.decode([i]) for i in _token_ids(ids)]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write JSON: our own layout as merge id pairs (``FORMAT``); a tokenizer made by
        ``from_vocab`` as its vocabulary and byte merges in hex (``VOCAB_FORMAT``)."""
        if self.first_merge_id is not None:
            data = {
                "format": self.FORMAT,
                "special_tokens": self.special_tokens,
                "merges": [list(pair) for pair in self.merges],
            }
        else:
            data = {
                "format": self.VOCAB_FORMAT,
                "special_tokens": self.special_tokens,
                "vocab": {str(i): data.hex() for i, data in sorted(self.vocab.items())},
                "merges": [[a.hex(), b.hex()] for a, b in self.merges_as_bytes()],
            }
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by ``save``; every field is checked, nothing is coerced."""
        data = _read_json(path)
        if data.get("format") == cls.VOCAB_FORMAT:
            return cls._load_vocab_format(path, data)
        _check_fields(path, data, cls.FORMAT, {
            "merges": "a list of [left id, right id] pairs",
            "special_tokens": "a list of strings",
        })
        merges = _check_list(path, data["merges"], "merges", "[left id, right id] pairs")
        for i, pair in enumerate(merges):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
                raise ValueError(f"{path}: merges[{i}] must be a pair of integer token ids, got {pair!r}")
        repeat = _first_repeat(merges)
        if repeat:
            raise ValueError(f"{path}: merges[{repeat[1]}] {merges[repeat[1]]} repeats merges[{repeat[0]}]")
        special_tokens = _load_special_tokens(path, data)
        try:
            return cls([tuple(pair) for pair in merges], special_tokens)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def _load_vocab_format(cls, path, data: dict) -> "BPETokenizer":
        _check_fields(path, data, cls.VOCAB_FORMAT, {
            "vocab": "an object mapping each id to its bytes in hex",
            "merges": "a list of [left hex, right hex] byte pairs",
            "special_tokens": "a list of strings",
        })
        if not isinstance(data["vocab"], dict):
            raise ValueError(f"{path}: 'vocab' must be an object mapping ids to hex bytes, got {type(data['vocab']).__name__}")

        def unhex(value, where):
            try:
                if not isinstance(value, str):
                    raise ValueError
                return bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{path}: {where} must be a string of hex digits, got {value!r}") from None

        vocab = {}
        for key, value in data["vocab"].items():
            if not (key.isascii() and key.isdigit()):
                raise ValueError(f"{path}: vocab key {key!r} is not a decimal token id")
            if int(key) in vocab:
                raise ValueError(f"{path}: vocab id {int(key)} appears twice (as {key!r})")
            vocab[int(key)] = unhex(value, f"vocab[{key!r}]")
        merges = _check_list(path, data["merges"], "merges", "[left hex, right hex] pairs")
        byte_merges = []
        for i, pair in enumerate(merges):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"{path}: merges[{i}] must be a pair of hex strings, got {pair!r}")
            byte_merges.append(tuple(unhex(x, f"merges[{i}]") for x in pair))
        try:
            return cls.from_vocab(vocab, byte_merges, _load_special_tokens(path, data))
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: {exc}") from None


def load_tokenizer(path: str | os.PathLike) -> CharTokenizer | BPETokenizer:
    """Load either tokenizer from a file written by its ``save``."""
    data = _read_json(path)  # read once to see the format tag; load() re-reads (small files)
    fmt = data.get("format")
    if fmt in (BPETokenizer.FORMAT, BPETokenizer.VOCAB_FORMAT):
        return BPETokenizer.load(path)
    if fmt == CharTokenizer.FORMAT:
        return CharTokenizer.load(path)
    raise ValueError(
        f"{path} is neither a {BPETokenizer.FORMAT}, {BPETokenizer.VOCAB_FORMAT} nor a {CharTokenizer.FORMAT} file "
        + (f"(format: {fmt!r})" if "format" in data else "(it has no 'format' key)")
    )


def bytes_per_token(tokenizer, text: str, **encode_options) -> float:
    """Compression: UTF-8 bytes of ``text`` per token. Higher means shorter sequences.
    ``encode_options`` go to ``encode`` (``allowed_special="all"`` for text that holds special tokens)."""
    n = len(tokenizer.encode(text, **encode_options))
    return len(text.encode("utf-8")) / n if n else 0.0
