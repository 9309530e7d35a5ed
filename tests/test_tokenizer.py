import json
import random
import warnings
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tinyformer.tokenizer as tokenizer_module
from tinyformer.tokenizer import (
    _PRETOKENIZE,
    BPETokenizer,
    CharTokenizer,
    _special_pattern,
    _split_on_specials,
    bytes_per_token,
    load_tokenizer,
)

SPECIAL = "<|endoftext|>"
CORPUS = (
    "the quick brown fox jumps over the lazy dog. " * 20
    + f"low lower lowest newer newest wider widest{SPECIAL}"
    + "Ünïcödé text, emoji 🙂🙂 and 数字 123 4567 don't won't they're\n\n  spaced   out\n" * 5
)


@pytest.fixture(scope="module")
def bpe():
    return _MODULE_BPE


def test_bpe_hand_worked_example():
    # Pre-tokens: "ab", " ab", " ab", " abc".
    # Pair counts: (a,b)=4, (' ',a)=3, (b,c)=1 -> merge (a,b).
    # Then (' ',ab)=3, (ab,c)=1 -> merge (' ',ab); then (' ab',c)=1 -> merge (' ab',c).
    tok = BPETokenizer.train("ab ab ab abc", 256 + 3)
    assert tok.merges_as_bytes() == [(b"a", b"b"), (b" ", b"ab"), (b" ab", b"c")]
    assert tok.encode("ab abc") == [256, 258]
    assert tok.vocab[258] == b" abc"


def test_bpe_ties_go_to_the_lexicographically_greater_pair():
    # Every pair occurs once: (x,y), (' ',z), (z,w). b"z" > b"x" > b" ".
    tok = BPETokenizer.train("xy zw", 256 + 3)
    assert tok.merges_as_bytes() == [(b"z", b"w"), (b"x", b"y"), (b" ", b"zw")]


def test_bpe_training_is_deterministic(bpe):
    assert BPETokenizer.train(CORPUS, 340, special_tokens=[SPECIAL]).merges == bpe.merges
    assert bpe.vocab_size == 340


def test_bpe_warns_when_the_text_runs_out_of_pairs():
    with pytest.warns(UserWarning, match="ran out of pairs to merge after 3 merges: vocabulary has 259 tokens, not the 300"):
        tok = BPETokenizer.train("ab ab ab abc", 300)
    assert tok.vocab_size == 259


def test_special_tokens_are_whole_and_never_merged():
    text = f"hello{SPECIAL}world{SPECIAL}" * 50
    tok = BPETokenizer.train(text, 262, special_tokens=[SPECIAL])
    special_bytes = SPECIAL.encode()
    assert all(special_bytes not in tok.vocab[i] for i in range(tok.first_merge_id, tok.vocab_size))
    ids = tok.encode(f"x{SPECIAL}y", allowed_special="all")
    assert ids.count(tok.special_to_id[SPECIAL]) == 1
    assert tok.decode(ids) == f"x{SPECIAL}y"


def test_overlapping_special_tokens_longest_first():
    double = "<|a|><|a|>"
    tok = BPETokenizer([], special_tokens=["<|a|>", double])
    ids = tok.encode("<|a|><|a|><|a|>", allowed_special="all")
    assert ids == [tok.special_to_id[double], tok.special_to_id["<|a|>"]]


def test_special_token_errors_name_the_entry():
    """The constructor and a tokenizer file check special tokens with one function, same words."""
    with pytest.raises(ValueError, match=r"special_tokens\[1\] must be a non-empty string, got ''"):
        BPETokenizer([], special_tokens=["<|a|>", ""])
    with pytest.raises(ValueError, match=r"special_tokens\[2\] '<\|a\|>' repeats special_tokens\[0\]"):
        BPETokenizer([], special_tokens=["<|a|>", "<|b|>", "<|a|>"])


def test_bpe_compresses(bpe):
    assert bytes_per_token(bpe, CORPUS, allowed_special="all") > 2.0
    assert bytes_per_token(BPETokenizer([]), CORPUS) == 1.0


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_unicode(text):
    tok = _MODULE_BPE
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab <|endoftext|>\n\t'sé🙂1")), max_size=15), max_size=8))
def test_encode_iterable_equals_encode_for_any_chunking(chunks):
    tok = _MODULE_BPE
    assert list(tok.encode_iterable(chunks, allowed_special="all")) == tok.encode("".join(chunks), allowed_special="all")


def test_encode_iterable_streams_a_file(tmp_path, bpe):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS * 3, encoding="utf-8")
    with open(path, encoding="utf-8") as f:
        streamed = list(bpe.encode_iterable(f, allowed_special="all"))
    assert streamed == bpe.encode(CORPUS * 3, allowed_special="all")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(set(CORPUS)))))
def test_char_tokenizer_round_trips(text):
    tok = CharTokenizer.from_text(CORPUS)
    assert tok.decode(tok.encode(text)) == text


def test_char_tokenizer_errors_name_the_problem():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"characters not in this tokenizer's vocabulary: \['x', 'z'\]"):
        tok.encode("azbx")
    with pytest.raises(ValueError, match="unknown token id 3: this tokenizer has ids 0..2"):
        tok.decode([0, 3])


def test_bpe_errors_name_the_problem(bpe):
    with pytest.raises(ValueError, match="unknown token id 340"):
        bpe.decode([1, 340])
    with pytest.raises(ValueError, match="lone surrogate"):
        bpe.encode("a\ud800b")
    with pytest.raises(ValueError, match="vocab_size 200 is smaller than the 256 bytes"):
        BPETokenizer.train("abc", 200)
    with pytest.raises(ValueError, match="not a byte or an earlier merge"):
        BPETokenizer([(256, 1)])


def test_save_and_load(tmp_path, bpe):
    bpe.save(tmp_path / "bpe.json")
    loaded = load_tokenizer(tmp_path / "bpe.json")
    assert isinstance(loaded, BPETokenizer) and loaded.merges == bpe.merges
    assert loaded.encode(CORPUS, allowed_special="all") == bpe.encode(CORPUS, allowed_special="all")
    char = CharTokenizer.from_text(CORPUS)
    char.save(tmp_path / "char.json")
    assert load_tokenizer(tmp_path / "char.json").chars == char.chars


def test_unreadable_tokenizer_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read tokenizer file .*bad.json"):
        BPETokenizer.load(bad)
    with pytest.raises(ValueError, match="cannot read tokenizer file .*missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    bad.write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json is neither a tinyformer-bpe-v1, tinyformer-bpe-vocab-v1 nor a "
                                         r"tinyformer-char-v1 file \(format: 'something-else'\)"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"merges": []}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json is neither .* \(it has no 'format' key\)"):
        load_tokenizer(bad)
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json is not a tokenizer file: it holds a JSON list, not an object"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"format": "tinyformer-char-v1", "chars": ["a"]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json is not a tinyformer-bpe-v1 file \(format: 'tinyformer-char-v1'\)"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"format": "tinyformer-bpe-v1", "merges": [], "special_tokens": []}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json is not a tinyformer-char-v1 file \(format: 'tinyformer-bpe-v1'\)"):
        CharTokenizer.load(bad)


BPE_OK = {"format": "tinyformer-bpe-v1", "special_tokens": ["<|x|>"], "merges": [[97, 98], [257, 99]]}
CHAR_OK = {"format": "tinyformer-char-v1", "chars": ["a", "b", "\n"]}
VOCAB_OK = {
    "format": "tinyformer-bpe-vocab-v1",
    "special_tokens": [],
    "vocab": {**{str(i): bytes([i]).hex() for i in range(256)}, "300": b"ab".hex()},
    "merges": [["61", "62"]],
}

BAD_FILES = {
    # BPE, our layout
    "float merge id": ({**BPE_OK, "merges": [[97, 98.0]]}, r"merges\[0\] must be a pair of integer token ids, got \[97, 98.0\]"),
    "bool merge id": ({**BPE_OK, "merges": [[True, 98]]}, r"merges\[0\] must be a pair of integer token ids, got \[True, 98\]"),
    "string merge id": ({**BPE_OK, "merges": [["x", 1]]}, r"merges\[0\] must be a pair of integer token ids, got \['x', 1\]"),
    "merge of three": ({**BPE_OK, "merges": [[97, 98, 99]]}, r"merges\[0\] must be a pair of integer token ids"),
    "duplicated merge": ({**BPE_OK, "merges": [[97, 98], [99, 100], [97, 98]]}, r"merges\[2\] \[97, 98\] repeats merges\[0\]"),
    "merge of unknown id": ({**BPE_OK, "merges": [[97, 300]]}, r"merge 0 \(97, 300\) uses token id 300, which is not a byte or an earlier merge"),
    "merge of a special token": ({**BPE_OK, "merges": [[256, 97]]}, r"merge 0 \(256, 97\) uses token id 256"),
    "merges not a list": ({**BPE_OK, "merges": {"0": [97, 98]}}, r"'merges' must be a list of \[left id, right id\] pairs, got dict"),
    "missing merges": ({"format": "tinyformer-bpe-v1", "special_tokens": []}, r"missing required key 'merges' \(a list of \[left id, right id\] pairs\)"),
    "missing special_tokens": ({"format": "tinyformer-bpe-v1", "merges": []}, r"missing required key 'special_tokens'"),
    "special tokens a string": ({**BPE_OK, "special_tokens": "<|x|>"}, r"'special_tokens' must be a list of strings, got a string '<\|x\|>'"),
    "special token not a string": ({**BPE_OK, "special_tokens": [5]}, r"special_tokens\[0\] must be a non-empty string, got 5"),
    "single-byte special token": ({**BPE_OK, "special_tokens": ["a"]}, r"special token 'a' is a single byte: it would make that byte unencodable as text"),
    "duplicate special token": ({**BPE_OK, "special_tokens": ["<|x|>", "<|x|>"]}, r"special_tokens\[1\] '<\|x\|>' repeats special_tokens\[0\]"),
    "unexpected key": ({**BPE_OK, "vocab_size": 300}, r"unexpected key\(s\) \['vocab_size'\] in a tinyformer-bpe-v1 file"),
    # characters
    "chars a string": ({**CHAR_OK, "chars": "abc"}, r"'chars' must be a list of single characters, got a string 'abc'"),
    "duplicate char": ({**CHAR_OK, "chars": ["a", "b", "a"]}, r"chars\[2\] 'a' repeats chars\[0\]"),
    "multi-character entry": ({**CHAR_OK, "chars": ["a", "bc"]}, r"chars\[1\] must be a single character, got 'bc'"),
    "non-string char": ({**CHAR_OK, "chars": ["a", 1]}, r"chars\[1\] must be a single character, got 1"),
    "missing chars": ({"format": "tinyformer-char-v1"}, r"missing required key 'chars' \(a list of single characters, one per token id\)"),
    # someone else's vocabulary
    "vocab id not decimal": ({**VOCAB_OK, "vocab": {**VOCAB_OK["vocab"], "x1": "6162"}}, r"vocab key 'x1' is not a decimal token id"),
    "vocab id twice": ({**VOCAB_OK, "vocab": {**VOCAB_OK["vocab"], "0300": "6163"}}, r"vocab id 300 appears twice \(as '0300'\)"),
    "vocab bytes not hex": ({**VOCAB_OK, "vocab": {**VOCAB_OK["vocab"], "300": "zz"}}, r"vocab\['300'\] must be a string of hex digits, got 'zz'"),
    "vocab bytes repeated": ({**VOCAB_OK, "vocab": {**VOCAB_OK["vocab"], "301": "6162"}}, r"ids 300 and 301 both spell b'ab'"),
    "vocab merge not hex": ({**VOCAB_OK, "merges": [["61", 62]]}, r"merges\[0\] must be a string of hex digits, got 62"),
    "vocab merge result missing": ({**VOCAB_OK, "merges": [["61", "63"]]}, r"merge 0 \(b'a', b'c'\) makes b'ac', which is not in the vocabulary"),
    "vocab missing": ({k: v for k, v in VOCAB_OK.items() if k != "vocab"}, r"missing required key 'vocab'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_strict_loaders_name_the_file_and_the_problem(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"tokenizer.json.*{message}"):
        load_tokenizer(path)


def test_the_good_files_of_the_strict_loader_tests_load(tmp_path):
    # the bad files above differ from these in one field only
    path = tmp_path / "tokenizer.json"
    for content, ids in ((BPE_OK, [257, 258, 256]), (CHAR_OK, [0, 1, 2]), (VOCAB_OK, [300, 99])):
        path.write_text(json.dumps(content), encoding="utf-8")
        tok = load_tokenizer(path)
        text = tok.decode(ids)
        assert text == {"tinyformer-bpe-v1": "ababc<|x|>", "tinyformer-char-v1": "ab\n", "tinyformer-bpe-vocab-v1": "abc"}[content["format"]]
        assert tok.encode(text, allowed_special="all") == ids


def test_repeated_json_keys_are_refused_not_dropped(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"format": "tinyformer-char-v1", "chars": ["a"], "chars": ["b"]}', encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json.*key 'chars' appears more than once in one JSON object"):
        load_tokenizer(path)


def test_char_tokenizer_constructor_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"needs distinct characters, but 'a' is at 0 and 2"):
        CharTokenizer(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"needs single characters, but entry 1 is 'bc'"):
        CharTokenizer(["a", "bc"])


# ---------------------------------------------------------------- someone else's vocabulary


def _permuted(tok, seed):
    """The same tokenizer under shuffled ids: (from_vocab tokenizer, old id -> new id)."""
    rng = random.Random(seed)
    new_ids = rng.sample(range(10 * tok.vocab_size), tok.vocab_size)  # sparse, in no order
    perm = dict(zip(sorted(tok.vocab), new_ids))
    vocab = {perm[i]: data for i, data in tok.vocab.items()}
    return BPETokenizer.from_vocab(vocab, tok.merges_as_bytes(), tok.special_tokens), perm


def test_from_vocab_keeps_the_given_ids(bpe, tmp_path):
    permuted, perm = _permuted(bpe, seed=0)
    assert permuted.vocab_size == bpe.vocab_size
    assert permuted.special_to_id[SPECIAL] == perm[bpe.special_to_id[SPECIAL]]
    texts = [CORPUS, f"unseen wörds{SPECIAL}and   spaces\n", "", "🙂" * 7 + "aaaaaaa"]
    for text in texts:
        ids = bpe.encode(text, allowed_special="all")
        assert permuted.encode(text, allowed_special="all") == [perm[i] for i in ids]
        assert permuted.decode(permuted.encode(text, allowed_special="all")) == text
        assert permuted.decode([perm[i] for i in ids]) == bpe.decode(ids)
    assert list(permuted.encode_iterable(CORPUS.splitlines(keepends=True), allowed_special="all")) == permuted.encode(CORPUS, allowed_special="all")
    unused = next(i for i in range(max(permuted.vocab)) if i not in permuted.vocab)
    with pytest.raises(ValueError, match=rf"unknown token id {unused}: this tokenizer has 340 ids, from \d+ to \d+, with gaps"):
        permuted.decode([unused])
    # it saves in the vocabulary format and loads back with the same ids
    permuted.save(tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text())["format"] == "tinyformer-bpe-vocab-v1"
    loaded = load_tokenizer(tmp_path / "vocab.json")
    assert loaded.vocab == permuted.vocab and loaded.encode(CORPUS, allowed_special="all") == permuted.encode(CORPUS, allowed_special="all")


def test_from_vocab_with_our_own_layout_equals_the_trained_tokenizer(bpe):
    same = BPETokenizer.from_vocab(bpe.vocab, bpe.merges_as_bytes(), [SPECIAL])
    assert same.merges == bpe.merges and same.encode(CORPUS, allowed_special="all") == bpe.encode(CORPUS, allowed_special="all")


def _byte_vocab(extra=None):
    return {**{i: bytes([i]) for i in range(256)}, **(extra or {})}


FROM_VOCAB_ERRORS = {
    "merge of unknown bytes": (_byte_vocab(), [(b"a", b"\xff\xfe")], (), r"merge 0 \(b'a', b'\\xff\\xfe'\) uses b'\\xff\\xfe', which is not in the vocabulary"),
    "merge result missing": (_byte_vocab(), [(b"a", b"b")], (), r"merge 0 \(b'a', b'b'\) makes b'ab', which is not in the vocabulary"),
    "two ids, same bytes": (_byte_vocab({300: b"ab", 301: b"ab"}), [], (), r"ids 300 and 301 both spell b'ab'"),
    "a byte missing": ({i: bytes([i]) for i in range(1, 256)}, [], (), r"vocab lacks 1 single bytes \(0x00\)"),
    "repeated merge": (_byte_vocab({300: b"ab"}), [(b"a", b"b"), (b"a", b"b")], (), r"merge 1 \(b'a', b'b'\) repeats merge 0"),
    "part made by no earlier merge": (_byte_vocab({300: b"ab", 301: b"abc"}), [(b"ab", b"c"), (b"a", b"b")], (),
                                      r"merge 0 \(b'ab', b'c'\) uses b'ab' \(id 300\), which is neither a single byte nor made by an earlier merge"),
    "merge part not bytes": (_byte_vocab(), [("a", b"b")], (), r"merge 0 must be a pair of bytes, got \('a', b'b'\)"),
    "special token not in vocab": (_byte_vocab(), [], ["<|eot|>"], r"special token '<\|eot\|>' is not in the vocabulary"),
    "special token a single byte": (_byte_vocab(), [], ["a"], r"special token 'a' is a single byte"),
    "merge makes a special token": (_byte_vocab({300: b"ab"}), [(b"a", b"b")], ["ab"], r"merge 0 \(b'a', b'b'\) makes special token 'ab'"),
    "special tokens as one string": (_byte_vocab(), [], "<|eot|>", r"special_tokens must be a list of strings, got a single str"),
    "string bytes": (_byte_vocab({300: "ab"}), [], (), r"vocab\[300\] must be non-empty bytes, got 'ab'"),
    "empty bytes": (_byte_vocab({300: b""}), [], (), r"vocab\[300\] must be non-empty bytes, got b''"),
    "negative id": (_byte_vocab({-1: b"ab"}), [], (), r"vocab ids must be >= 0, got -1"),
    "bool id": ({**{i: bytes([i]) for i in range(256) if i != 1}, True: b"\x01"}, [], (), r"each vocab key must be an integer token id, got True"),
    "not a mapping": ([(0, b"a")], [], (), r"vocab must be a mapping from token id to bytes, got list"),
}


@pytest.mark.parametrize("case", list(FROM_VOCAB_ERRORS))
def test_from_vocab_errors_name_the_problem(case):
    vocab, merges, special, message = FROM_VOCAB_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        BPETokenizer.from_vocab(vocab, merges, special)


def test_merge_ids_must_be_integers():
    with pytest.raises(ValueError, match=r"merge 0 \(97, 98.0\): each id must be an integer token id, got 98.0 \(float\)"):
        BPETokenizer([(97, 98.0)])
    with pytest.raises(ValueError, match=r"merge 1 \(97, 98\) repeats merge 0"):
        BPETokenizer([(97, 98), (97, 98)])


# ---------------------------------------------------------------- the fast trainer equals a simple one


def _reference_train(text, vocab_size, special_tokens=()):
    """BPE training written the slow, obvious way: recount every pair of every
    pre-token after each merge, take the most frequent (ties: greater bytes, then
    smaller ids), replace it left to right."""
    words = Counter()
    for part, special in _split_on_specials(text, _special_pattern(special_tokens)):
        if not special:
            words.update(tuple(w.encode()) for w in _PRETOKENIZE.findall(part))
    vocab = {i: bytes([i]) for i in range(256)}
    merges, next_id = [], 256 + len(special_tokens)
    while next_id < vocab_size:
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        a, b = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]], -p[0], -p[1]))
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
                    out.append(next_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words, vocab[next_id] = merged, vocab[a] + vocab[b]
        merges.append((a, b))
        next_id += 1
    return merges


def _reference_encode(tok, text):
    """Encode one pre-token at a time: repeatedly apply the earliest-learned merge
    present to every occurrence, left to right (what training did)."""
    rank = {pair: r for r, pair in enumerate(tok.merges)}
    ids = []
    for piece, special in tok._pieces(text):
        if special:
            ids.append(tok.special_to_id[piece])
            continue
        tokens = list(piece.encode())
        while len(tokens) > 1:
            best = min((rank.get(p, len(rank)), p) for p in zip(tokens, tokens[1:]))
            if best[0] == len(rank):
                break
            a, b = best[1]
            out, i = [], 0
            while i < len(tokens):
                if i + 1 < len(tokens) and tokens[i] == a and tokens[i + 1] == b:
                    out.append(tok.first_merge_id + best[0])
                    i += 2
                else:
                    out.append(tokens[i])
                    i += 1
            tokens = out
        ids.extend(tokens)
    return ids


_TEXT_ALPHABET = st.sampled_from(list("aab  ba\nlé🙂1'") + ["<|s|>", "aaaa", "abab"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_TEXT_ALPHABET, max_size=60).map("".join), st.integers(256, 300), st.booleans())
def test_fast_trainer_equals_reference_on_random_texts(text, vocab_size, with_special):
    special = ["<|s|>"] if with_special else []
    vocab_size = max(vocab_size, 256 + len(special))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small texts run out of pairs
        tok = BPETokenizer.train(text, vocab_size, special_tokens=special)
    assert tok.merges == _reference_train(text, vocab_size, special)
    assert tok.encode(text, allowed_special="all") == _reference_encode(tok, text)


def test_fast_trainer_equals_reference_on_long_pieces_without_whitespace():
    rng = random.Random(0)
    text = "".join(rng.choice("aab") for _ in range(3000)) + " " + "x" * 501 + " " + "".join(rng.choice("ab") for _ in range(2000))
    tok = BPETokenizer.train(text, 256 + 60)
    assert tok.merges == _reference_train(text, 256 + 60)
    assert tok.encode(text) == _reference_encode(tok, text)
    assert tok.decode(tok.encode(text)) == text
    other = "".join(rng.choice("abx") for _ in range(2000))  # a long piece the merges were not learned on
    assert tok.encode(other) == _reference_encode(tok, other)


def test_trained_tokenizer_encodes_like_the_reference(bpe):
    assert bpe.encode(CORPUS, allowed_special="all") == _reference_encode(bpe, CORPUS)


def test_training_progress_bar(capsys):
    BPETokenizer.train("ab ab ab abc", 256 + 3, progress=True)
    err = capsys.readouterr().err
    assert "BPE merges" in err and "3/3" in err


# ---------------------------------------------------------------- streaming equals encode, in linear time


@contextmanager
def _stream_step(step):
    """encode_iterable searches for a cut once ``_STREAM_STEP`` characters have gathered; a small
    step makes short texts exercise the search (a search at every chunk when 0 and nothing is kept)."""
    old = getattr(tokenizer_module, "_STREAM_STEP", None)
    tokenizer_module._STREAM_STEP = step
    try:
        yield
    finally:
        if old is None:
            del tokenizer_module._STREAM_STEP
        else:
            tokenizer_module._STREAM_STEP = old


_STREAM_PIECES = st.sampled_from(
    ["a", "b", "l", "s", "x", "'", " ", "  ", "\n", "\t", "é", "🙂", "1", ",", "<", "|", ">", "<|", "|>",
     SPECIAL, SPECIAL[:-1], "<|a|>", "<|a|><|a|>", "é🙂", "'ll", "they're", " won't", "low", "er", "   "]
)


@st.composite
def _chunked_texts(draw):
    """A text and a chunking of it: one character per chunk, or cut at random points (empty chunks too)."""
    text = "".join(draw(st.lists(_STREAM_PIECES, max_size=40)))
    if draw(st.booleans()):
        return text, list(text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 2)))
    return text, [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def _assert_stream_equals_encode(tok, text, chunks, **options):
    try:
        want = tok.encode(text, **options)
    except ValueError as exc:
        assert "special token" in str(exc)
        with pytest.raises(ValueError, match="special token"):
            list(tok.encode_iterable(chunks, **options))
        return
    assert list(tok.encode_iterable(chunks, **options)) == want


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(["one special", "no special", "overlapping specials"]), text_and_chunks=_chunked_texts(),
       step=st.sampled_from([0, 1, 7, 256]))
@example(name="one special", text_and_chunks=("a  <|endoftext|>", ["a  <|endoftext|", ">"]), step=0)
@example(name="no special", text_and_chunks=("x'll", ["x'l", "l"]), step=0)
@example(name="no special", text_and_chunks=(" \naax", [" \naa", "x"]), step=0)
def test_encode_iterable_equals_encode_on_every_chunking(name, text_and_chunks, step):
    """Chunk boundaries inside a special token, after whitespace, inside a contraction: the stream
    holds back what the rest of the text may still change, for every way to treat special tokens."""
    tok = _STREAM_TOKENIZERS[name]
    text, chunks = text_and_chunks
    with _stream_step(step):
        for options in ({"allowed_special": "all"}, {}, {"disallowed_special": ()}):
            _assert_stream_equals_encode(tok, text, chunks, **options)


def test_encode_iterable_equals_encode_on_random_chunkings_of_a_long_text():
    rng = random.Random(0)
    text = "".join(rng.choice(["a", "  ", "\n", "é", "'ll", "they're", SPECIAL, "<|a|>", "<|a|><|a|>", "x" * 300, " low"])
                   for _ in range(400))
    for name, tok in _STREAM_TOKENIZERS.items():
        want = tok.encode(text, allowed_special="all")
        for _ in range(20):
            cuts = sorted(rng.sample(range(len(text)), rng.randrange(1, 400)))
            chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
            assert list(tok.encode_iterable(chunks, allowed_special="all")) == want, name


def test_encode_iterable_work_is_linear_in_one_character_chunks(monkeypatch):
    """Characters searched for a cut, summed over a stream of one-character chunks: about 2 per
    character of text, not (characters since the last whitespace) per character."""
    searched, longest = [], []
    search = BPETokenizer._safe_cut

    def counting(self, buffer, *args):
        searched[-1] += len(buffer)
        longest[-1] = max(longest[-1], len(buffer))
        return search(self, buffer, *args)

    monkeypatch.setattr(BPETokenizer, "_safe_cut", counting)
    rng = random.Random(0)
    for n in (10_000, 40_000):
        no_space = "".join(rng.choice("ab") for _ in range(n))  # one pre-token of n letters
        words = "".join(rng.choice(["the ", "quick ", "fox, ", "\n", "🙂 "]) for _ in range(n // 4))[:n]
        for text in (no_space, words):
            searched.append(0)
            longest.append(0)
            assert list(_MODULE_BPE.encode_iterable(text)) == _MODULE_BPE.encode(text)  # a str streams one character at a time
    no_space_10k, words_10k, no_space_40k, words_40k = searched
    assert no_space_40k <= 5 * 40_000 and words_40k <= 5 * 40_000, searched
    assert no_space_40k < 8 * no_space_10k, searched  # 4 times the text: 4 times the work, not 16
    assert max(longest[1], longest[3]) < 1000, longest  # the buffer holds the unfinished tail, not the text


# ---------------------------------------------------------------- special tokens and ids from users


def test_special_tokens_in_text_are_refused_unless_allowed(bpe):
    text = f"a user wrote {SPECIAL} here"
    refused = (r"the text holds the special token '<\|endoftext\|>' \(at index 13\), and text is not turned into "
               r"control tokens unless asked: pass allowed_special=\{'<\|endoftext\|>'\} \(or allowed_special='all'\) "
               r"to encode it as the special token, or disallowed_special=\(\) to encode it as ordinary text")
    with pytest.raises(ValueError, match=refused):
        bpe.encode(text)
    with pytest.raises(ValueError, match=refused):
        list(bpe.encode_iterable(["a user wrote <|endof", "text|> here"]))
    special_id = bpe.special_to_id[SPECIAL]
    allowed = bpe.encode(text, allowed_special="all")
    assert allowed.count(special_id) == 1 and allowed == bpe.encode(text, allowed_special={SPECIAL})
    as_text = bpe.encode(text, disallowed_special=())
    assert special_id not in as_text and bpe.decode(as_text) == text
    assert list(bpe.encode_iterable(text, disallowed_special=())) == as_text
    assert bpe.encode("no special token here") == bpe.encode("no special token here", allowed_special="all")
    with pytest.raises(ValueError, match=r"allowed_special must be 'all' or a collection of special tokens, got the string '<\|endoftext\|>'"):
        bpe.encode(text, allowed_special=SPECIAL)
    with pytest.raises(ValueError, match=r"allowed_special names '<\|nope\|>', which is not a special token of this tokenizer \(its special tokens: \['<\|endoftext\|>'\]\)"):
        bpe.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' is in both allowed_special and disallowed_special"):
        bpe.encode(text, allowed_special="all", disallowed_special={SPECIAL})
    chars = CharTokenizer.from_text("abc")
    assert chars.encode("abc", allowed_special="all", disallowed_special=()) == chars.encode("abc")
    with pytest.raises(ValueError, match=r"allowed_special names '<\|x\|>', but this tokenizer has no special tokens"):
        chars.encode("abc", allowed_special={"<|x|>"})


def test_special_tokens_may_not_be_a_single_byte():
    message = r"special token '\\n' is a single byte: it would make that byte unencodable as text"
    with pytest.raises(ValueError, match=message):
        BPETokenizer.train("banana\nbandana\n", 262, special_tokens=["<|x|>", "\n"])
    with pytest.raises(ValueError, match=message):
        BPETokenizer([], special_tokens=["\n"])
    with pytest.raises(ValueError, match=r"special_tokens\[0\] must be a non-empty string, got ''"):
        BPETokenizer.train("banana", 262, special_tokens=[""])
    assert BPETokenizer.train("banana é", 259, special_tokens=["é"]).special_to_id == {"é": 256}  # two bytes


@pytest.mark.parametrize("make", [lambda: _MODULE_BPE, lambda: CharTokenizer.from_text("abcdefgh")], ids=["bpe", "char"])
def test_ids_must_be_integers(make):
    tok = make()
    for ids, pos, shown in (([256.7, 4.2], 0, "256.7"), ([1, True], 1, "True"), ([1, "2"], 1, "'2'"),
                            ([np.float32(1.0)], 0, r"(np\.float32\()?1\.0\)?"), ([np.bool_(True)], 0, r"(np\.)?True_?"),
                            ([2, torch.tensor(1.5)], 1, r"tensor\(1.5000\)"), ([torch.tensor(True)], 0, r"tensor\(True\)")):
        with pytest.raises(ValueError, match=rf"token ids must be integers, but ids\[{pos}\] is {shown} "):
            tok.decode(ids)
    with pytest.raises(ValueError, match="ids must be a sequence of integer token ids, got a str '12'"):
        tok.decode("12")
    # integers of every kind are still read
    text = tok.decode([1, 2, 3])
    assert tok.decode(np.array([1, 2, 3])) == tok.decode(torch.tensor([1, 2, 3])) == text
    assert tok.decode([np.int32(1), torch.tensor(2), torch.tensor([3])]) == text
    if isinstance(tok, BPETokenizer):
        assert tok.token_strings(torch.tensor([104, 105])) == ["h", "i"]
        with pytest.raises(ValueError, match=r"token ids must be integers, but ids\[0\] is 104.0"):
            tok.token_strings([104.0])


# ---------------------------------------------------------------- damaged tokenizer files

_DAMAGED = {
    "random bytes": (b"\xdc" + random.Random(0).randbytes(300), r"not UTF-8 text: byte 0xdc at offset 0"),
    "truncated JSON": (json.dumps(BPE_OK).encode()[:40], r"not valid JSON: it ends too early"),
    "damaged JSON": (b'{"format": tinyformer}', r"not valid JSON: Expecting value, line 1 column 12"),
    "empty file": (b"", r"the file is empty"),
    "only whitespace": (b" \n", r"the file is empty"),
}


@pytest.mark.parametrize("case", list(_DAMAGED))
def test_damaged_tokenizer_files_name_the_file_and_the_remedy(tmp_path, case):
    content, why = _DAMAGED[case]
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    for load in (load_tokenizer, BPETokenizer.load, CharTokenizer.load):
        with pytest.raises(ValueError, match=rf"cannot read tokenizer file .*tokenizer\.json: it is not a tokenizer file written "
                                             rf"by tinyformer \({why}\); restore it from a copy, or save the tokenizer "
                                             rf"again \(a training run's tokenizer\.json: start the run again with --overwrite\)$"):
            load(path)


_MODULE_BPE = BPETokenizer.train(CORPUS, 340, special_tokens=[SPECIAL])
# merges that cross the places where a chunk boundary is tricky: "  " before a special token,
# " \n" before more whitespace, a contraction ("'ll")
_STREAM_CORPUS = CORPUS + f"a  {SPECIAL} x \n\ny we'll   you'll z\n" * 20
_STREAM_TOKENIZERS = {
    "one special": BPETokenizer.train(_STREAM_CORPUS, 300, special_tokens=[SPECIAL]),
    "no special": BPETokenizer.train(_STREAM_CORPUS.replace(SPECIAL, " "), 300),
    "overlapping specials": BPETokenizer.train(_STREAM_CORPUS + "<|a|> a<|a|><|a|>  é🙂" * 5, 300,
                                               special_tokens=[SPECIAL, "<|a|>", "<|a|><|a|>", "é🙂"]),
}
