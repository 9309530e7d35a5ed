import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyformer.tokenizer import BPETokenizer, CharTokenizer, bytes_per_token, load_tokenizer

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
    ids = tok.encode(f"x{SPECIAL}y")
    assert ids.count(tok.special_to_id[SPECIAL]) == 1
    assert tok.decode(ids) == f"x{SPECIAL}y"


def test_overlapping_special_tokens_longest_first():
    double = "<|a|><|a|>"
    tok = BPETokenizer([], special_tokens=["<|a|>", double])
    ids = tok.encode("<|a|><|a|><|a|>")
    assert ids == [tok.special_to_id[double], tok.special_to_id["<|a|>"]]


def test_bpe_compresses(bpe):
    assert bytes_per_token(bpe, CORPUS) > 2.0
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
    assert list(tok.encode_iterable(chunks)) == tok.encode("".join(chunks))


def test_encode_iterable_streams_a_file(tmp_path, bpe):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS * 3, encoding="utf-8")
    with open(path, encoding="utf-8") as f:
        streamed = list(bpe.encode_iterable(f))
    assert streamed == bpe.encode(CORPUS * 3)


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
    assert loaded.encode(CORPUS) == bpe.encode(CORPUS)
    char = CharTokenizer.from_text(CORPUS)
    char.save(tmp_path / "char.json")
    assert load_tokenizer(tmp_path / "char.json").chars == char.chars


def test_corrupt_tokenizer_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read tokenizer file"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    with pytest.raises(ValueError, match="is neither a tinyformer-bpe-v1 nor a tinyformer-char-v1 file"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"format": "tinyformer-bpe-v1", "merges": [["x", 1]]}), encoding="utf-8")
    with pytest.raises(ValueError, match="malformed merges list"):
        BPETokenizer.load(bad)


_MODULE_BPE = BPETokenizer.train(CORPUS, 340, special_tokens=[SPECIAL])
