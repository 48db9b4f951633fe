"""Job ids: FLUID generator, every encoding both ways, SPEC 1.2 parse order, JobID."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys

import orjson
import pytest
from flux.core.job import fluid
from flux.core.job.fluid import FluidError, FluidGenerator, InvalidJobID
from flux.job import JobID, id_encode, id_parse
from hypothesis import given
from hypothesis import strategies as st

MAX = 2**64 - 1

# (id, dec, hex, dothex, words, emoji, f58 digits) from flux-core's libjob/fluid unit tests
VECTORS = [
    (0, "0", "0x0", "0000.0000.0000.0000",
     "academy-academy-academy--academy-academy-academy", "😃", "1"),
    (1, "1", "0x1", "0000.0000.0000.0001",
     "acrobat-academy-academy--academy-academy-academy", "😄", "2"),
    (65535, "65535", "0xffff", "0000.0000.0000.ffff",
     "nevada-archive-academy--academy-academy-academy", "💁📚", "LUv"),
    (6787342413402046, "6787342413402046", "0x181d0d4d850fbe", "0018.1d0d.4d85.0fbe",
     "cake-plume-nepal--neuron-pencil-academy", "👴😱🔚🎮🕙🚩", "uzzybunny"),
    (6731191091817518, "6731191091817518", "0x17e9fb8df16c2e", "0017.e9fb.8df1.6c2e",
     "reform-remote-galileo--heart-package-academy", None, "uZZybuNNy"),
    (MAX - 1, "18446744073709551614", "0xfffffffffffffffe", "ffff.ffff.ffff.fffe",
     "mustang-analyze-verbal--natural-analyze-verbal", "🚹💗💧👗😷📷📙", "jpXCZedGfVP"),
    (MAX, "18446744073709551615", "0xffffffffffffffff", "ffff.ffff.ffff.ffff",
     "natural-analyze-verbal--natural-analyze-verbal", "🚹💗💧👗😷📷📚", "jpXCZedGfVQ"),
]

F58 = [(0, "1"), (1, "2"), (57, "z"), (1234, "NH"), (1888, "ZZ"), (3363, "zz"), (3364, "211"),
       (4369, "2JL"), (65535, "LUv"), (4294967295, "7YXq9G"), (633528662, "xyzzy")]
EMOJI = [(57, "🙊"), (1234, "😁👌"), (1888, "😆🐻"), (4369, "😊🌀"), (4294967295, "😳🏪🍖🍸")]


@pytest.fixture(autouse=True)
def _unicode_f58(monkeypatch):
    monkeypatch.delenv("FLUX_F58_FORCE_ASCII", raising=False)
    monkeypatch.setattr(fluid, "_utf8_locale", lambda: True)


# ------------------------------------------------------------- encodings


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: str(v[0]))
def test_vectors_encode_and_parse(vec):
    n, dec, hx, dothex, words, emoji, b58 = vec
    assert fluid.encode(n, "dec") == dec
    assert fluid.encode(n, "hex") == hx
    assert fluid.encode(n, "dothex") == dothex
    assert fluid.encode(n, "kvs") == "job." + dothex
    assert fluid.encode(n, "words") == words
    assert fluid.encode(n, "f58") == "ƒ" + b58
    assert fluid.encode(n, "f58plain") == "f" + b58
    if emoji:
        assert fluid.encode(n, "emoji") == emoji
        assert fluid.parse(emoji) == n
    for text in (dec, hx, dothex, "job." + dothex, words, "ƒ" + b58, "f" + b58):
        assert fluid.parse(text) == n, text


@pytest.mark.parametrize("n,digits", F58)
def test_f58_table(n, digits):
    assert fluid.encode_f58(n) == "ƒ" + digits
    assert fluid.parse("ƒ" + digits) == n
    assert fluid.parse("f" + digits) == n


@pytest.mark.parametrize("n,text", EMOJI)
def test_emoji_table(n, text):
    assert fluid.encode_emoji(n) == text
    assert fluid.parse(text) == n


def test_f58_leading_ones_are_zeros():
    assert fluid.parse("f111") == 0
    assert fluid.parse("ƒ1112") == 1


def test_encoding_names_case_insensitive_and_default():
    assert fluid.encode(1234, "F58") == "ƒNH"
    assert fluid.encode(1234, "DotHex") == "0000.0000.0000.04d2"
    assert fluid.encode(1234, None) == "1234"
    assert id_encode(1234) == "ƒNH"  # flux-core's default is f58


def test_unknown_encoding_is_eproto():
    with pytest.raises(FluidError) as info:
        fluid.encode(1, "base64")
    assert info.value.errno == errno.EPROTO
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert "base64" in str(info.value)


def test_encode_out_of_range():
    for bad in (-1, MAX + 1):
        for enc in fluid.ENCODINGS:
            with pytest.raises(InvalidJobID):
                fluid.encode(bad, enc)
    with pytest.raises(TypeError):
        fluid.encode_dothex(1.5)
    with pytest.raises(TypeError):
        fluid.encode_f58("12")


# ---------------------------------------------------------------- parsing


def test_parse_whitespace_and_prefix():
    assert fluid.parse("  1234  ") == 1234
    assert fluid.parse(" 0xffff   ") == 65535
    assert fluid.parse("\tƒNH\n") == 1234
    assert fluid.parse(" job.0000.0000.0000.04d2 ") == 1234
    assert fluid.parse(b"1234") == 1234


def test_parse_order_dot_wins_over_f():
    # dothex is checked before F58, so an 'f...' string with dots is dothex
    assert fluid.parse("ffff.ffff.ffff.ffff") == MAX
    assert fluid.parse("f.f.f.f") == 0x000F000F000F000F
    # and a '-' means words even when it starts with f
    assert fluid.parse("fiction-academy-academy--academy-academy-academy") == \
        fluid.MN_WORDS.index("fiction")


def test_parse_dothex_short_groups():
    assert fluid.parse("0.0.0.0") == 0
    assert fluid.parse("0.0.0.0039") == 57
    assert fluid.parse("0.0.0.ffff") == 65535
    assert fluid.parse("0000.0000.FFFF.ffff") == 4294967295


def test_parse_words_any_case():
    assert fluid.parse("ACROBAT-academy-academy--academy-academy-academy") == 1


@pytest.mark.parametrize("bad", [
    "", "   ", "boo", "f", "ƒ", "flux", "f1230", "fO", "x1", "-1", "0x", "0xg", "0x-1", "1_000",
    "١٢٣", "12 34", "18446744073709551616", "0x10000000000000000", "job.", "job.x",
    "1.2.3", "1.2.3.4.5", "00000.0.0.0", "g.0.0.0", "..." ,
    "a-a-a--a-a-a", "academy-academy", "academy-academy-academy--academy-academy-academy-academy",
    "academy-academy-amen--academy-academy-academy",  # > 2^32 in the low group
    "ego-academy-academy--academy-academy-academy",  # a 24-bit remainder word
    "fzzzzzzzzzzzz", "fzzzzzzzzzzz",  # 13 digits; 12 digits beyond 2^64
    "😃x", "🚹🚹🚹🚹🚹🚹🚹🚹", "🚩🚩🚩🚩🚩🚩🚩", "🤖",
])
def test_parse_rejects(bad):
    with pytest.raises(InvalidJobID) as info:
        fluid.parse(bad)
    exc = info.value
    assert isinstance(exc, ValueError) and isinstance(exc, OSError)
    assert exc.errno == errno.EINVAL
    assert repr(bad.strip())[1:-1] in str(exc) or bad.strip() in str(exc)


def test_parse_type_errors():
    with pytest.raises(TypeError):
        fluid.parse(1234)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobID):
        fluid.parse(b"\xff\xfe")


def test_decode_by_encoding():
    assert fluid.decode("0000.0000.0000.04d2", "dothex") == 1234
    assert fluid.decode("job.0000.0000.0000.04d2", "kvs") == 1234
    assert fluid.decode("ƒNH", "f58") == 1234
    assert fluid.decode("4d2", "hex") == 1234
    with pytest.raises(InvalidJobID):
        fluid.decode("1234", "f58")
    with pytest.raises(FluidError):
        fluid.decode("1234", "nope")


def test_error_pickles():
    exc = InvalidJobID("invalid jobid 'x': nope")
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is InvalidJobID and str(again) == str(exc) and again.errno == errno.EINVAL


# -------------------------------------------------------------- f58 prefix


def test_force_ascii_env(monkeypatch):
    monkeypatch.setenv("FLUX_F58_FORCE_ASCII", "1")
    assert fluid.encode_f58(1234) == "fNH"
    assert str(JobID(1234)) == "fNH"
    monkeypatch.delenv("FLUX_F58_FORCE_ASCII")
    assert fluid.encode_f58(1234) == "ƒNH"


def test_ascii_locale_uses_plain_f(monkeypatch):
    monkeypatch.setattr(fluid, "_utf8_locale", lambda: False)
    assert fluid.encode_f58(1234) == "fNH"
    assert fluid.encode_f58plain(1234) == "fNH"


def test_locale_detection_in_a_c_locale():
    code = "from flux.core.job import fluid; print(fluid.encode_f58(1234))"
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONIOENCODING="utf-8")
    env.pop("FLUX_F58_FORCE_ASCII", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         encoding="utf-8", check=True).stdout.strip()
    assert out == "fNH"
    env["LC_ALL"] = "C.UTF-8"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         encoding="utf-8", check=True).stdout.strip()
    assert out == "ƒNH"


# ------------------------------------------------------ property tests

ids = st.integers(min_value=0, max_value=MAX)


@given(ids)
def test_roundtrip_every_encoding(n):
    for enc in fluid.ENCODINGS:
        text = fluid.encode(n, enc)
        assert fluid.parse(text) == n, (enc, text)
        assert fluid.decode(text, enc) == n, (enc, text)
        assert JobID(text) == n


@given(ids)
def test_roundtrip_with_padding(n):
    assert fluid.parse(f"  job.{fluid.encode_dothex(n)}\n") == n
    assert fluid.parse(fluid.encode_words(n).upper()) == n


@given(st.text(max_size=30))
def test_parse_never_crashes(text):
    try:
        n = fluid.parse(text)
    except InvalidJobID:
        return
    assert 0 <= n <= MAX


@given(st.integers(0, fluid.MAX_TIMESTAMP), st.integers(0, fluid.MAX_GENERATOR),
       st.integers(0, fluid.MAX_SEQUENCE))
def test_fields(ts, gen, seq):
    n = fluid.make(ts, gen, seq)
    assert (fluid.timestamp_of(n), fluid.generator_of(n), fluid.sequence_of(n)) == (ts, gen, seq)


# --------------------------------------------------------------- generator


def test_generator_monotonic_and_fields():
    gen = FluidGenerator(5, timestamp=1000)
    ids_ = [gen.generate() for _ in range(5000)]
    assert ids_ == sorted(ids_) and len(set(ids_)) == len(ids_)
    assert all(fluid.generator_of(i) == 5 for i in ids_)
    assert fluid.timestamp_of(ids_[0]) >= 1000
    assert gen.next() > ids_[-1]


def test_generator_sequence_exhaustion_waits_for_next_ms(monkeypatch):
    clock = [10_000]
    calls = [0]

    def fake_clock():
        calls[0] += 1
        if calls[0] > 1500:  # time moves on only after a while
            clock[0] += 1
        return clock[0]

    monkeypatch.setattr(fluid, "_clock_ms", fake_clock)
    gen = FluidGenerator(0, timestamp=7)
    out = [gen.generate() for _ in range(1030)]
    assert [fluid.sequence_of(i) for i in out[:1024]] == list(range(1024))
    assert fluid.timestamp_of(out[1023]) == 7
    assert fluid.timestamp_of(out[1024]) == 8 and fluid.sequence_of(out[1024]) == 0
    assert out == sorted(out)


def test_generator_after_max_id():
    prev = FluidGenerator(0, timestamp=123456)
    last = max(prev.generate() for _ in range(100))
    nxt = FluidGenerator.after(last, generator_id=0)
    assert nxt.generate() > last
    assert fluid.timestamp_of(nxt.generate()) >= fluid.timestamp_of(last) + 1
    assert fluid.timestamp_of(FluidGenerator.after(0).generate()) < 1000  # starts near 0


def test_generator_restart_loop_never_goes_backwards():
    gen = FluidGenerator(0, 0)
    last = -1
    for _ in range(2000):
        n = gen.generate()
        assert n > last
        last = n
        gen = FluidGenerator.after(n)


def test_generator_bad_args_and_overflow(monkeypatch):
    with pytest.raises(FluidError):
        FluidGenerator(16384)
    with pytest.raises(FluidError):
        FluidGenerator(-1)
    with pytest.raises(FluidError):
        FluidGenerator(0, timestamp=2**40)
    gen = FluidGenerator(0, timestamp=fluid.MAX_TIMESTAMP)
    assert fluid.timestamp_of(gen.generate()) == fluid.MAX_TIMESTAMP
    monkeypatch.setattr(fluid, "_clock_ms", lambda: gen._clock_zero + 5)
    with pytest.raises(OverflowError):
        gen.generate()


def test_generator_timestamp_property():
    gen = FluidGenerator(0, timestamp=50)
    assert gen.timestamp >= 50


# ------------------------------------------------------------------- JobID


def test_jobid_from_every_form():
    for vec in VECTORS:
        n, dec, hx, dothex, words, emoji, b58 = vec
        for text in (n, dec, hx, dothex, "job." + dothex, words, "ƒ" + b58, "f" + b58, emoji):
            if text is None:
                continue
            j = JobID(text)
            assert j == n and isinstance(j, int)
            assert repr(j) == f"JobID({n})"
            assert (j.dec, j.hex, j.dothex, j.kvs, j.words) == (dec, hx, dothex, "job." + dothex, words)
            assert j.f58 == "ƒ" + b58 and j.f58plain == "f" + b58 and str(j) == j.f58
            if emoji:
                assert j.emoji == emoji
            for enc in fluid.ENCODINGS:
                assert j.encode(enc) == fluid.encode(n, enc)


def test_jobid_int_behaviour():
    j = JobID("ƒNH")
    assert j == 1234 and hash(j) == hash(1234) and j + 1 == 1235
    assert f"{j}" == "ƒNH" and f"{j:d}" == "1234"
    assert j.orig == "ƒNH" and JobID(1234).orig == "1234" and JobID(j).orig == "ƒNH"
    assert json.dumps({"id": j}) == '{"id": 1234}'
    assert orjson.loads(orjson.dumps({"id": j})) == {"id": 1234}
    again = pickle.loads(pickle.dumps(j))
    assert again == j and type(again) is JobID
    assert sorted([JobID(3), JobID(1), JobID(2)]) == [1, 2, 3]
    assert j.encode() == "1234"  # JobID.encode defaults to dec, as flux-core's


def test_jobid_errors():
    for bad in ("abc", "", "-1", "f1230"):
        with pytest.raises(ValueError):
            JobID(bad)
        with pytest.raises(OSError):
            JobID(bad)
    with pytest.raises(InvalidJobID):
        JobID(-1)
    with pytest.raises(InvalidJobID):
        JobID(2**64)
    for bad in (1.5, None, True, [1]):
        with pytest.raises(TypeError):
            JobID(bad)


def test_id_parse_and_encode():
    assert id_parse("ƒuzzybunny") == 6787342413402046
    assert id_encode(6787342413402046, "words") == "cake-plume-nepal--neuron-pencil-academy"
    with pytest.raises(OSError) as info:
        id_encode(1, "foo")
    assert info.value.errno == errno.EPROTO


def test_kvs_key():
    assert fluid.kvs_key(1234) == "job.0000.0000.0000.04d2"
    assert fluid.kvs_key(1234, "eventlog") == "job.0000.0000.0000.04d2.eventlog"


def test_module_paths_exist():
    import importlib

    mod = importlib.import_module("flux.job.JobID")
    assert mod.JobID is JobID and mod.id_parse is id_parse
