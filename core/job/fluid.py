"""FLUID, the Flux Locally Unique ID (RFC 19; SPEC 1): the generator and every string form.

A FLUID is a 64-bit unsigned integer::

    bits 63..24  timestamp   40 bits, milliseconds since the instance epoch
    bits 23..10  generator   14 bits (job-ingest uses its broker rank)
    bits  9..0   sequence    10 bits, ids handed out within one millisecond

String encodings (``flux job id --to=NAME``): ``dec``, ``hex``, ``dothex``, ``kvs``, ``f58``,
``f58plain``, ``words`` and ``emoji``.  :func:`parse` accepts any of them and follows the
detection order of SPEC 1.2 exactly.  Errors are :class:`InvalidJobID`, which is both an
``OSError`` (errno ``EINVAL``, as flux-core's bindings raise) and a ``ValueError``.

The f58 and dothex encoders sit on hot paths (every job listing, every KVS key), so they are
plain arithmetic with no caches.
"""

from __future__ import annotations

import errno
import os
import re
import time
from operator import index as _index

from flux.core.job._fluid_tables import EMOJI, MN_WORDS

TIMESTAMP_BITS = 40
GENERATOR_BITS = 14
SEQUENCE_BITS = 10
MAX_TIMESTAMP = (1 << TIMESTAMP_BITS) - 1
MAX_GENERATOR = (1 << GENERATOR_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
MAX_ID = (1 << 64) - 1
#: wildcard id accepted by some APIs (e.g. ``flux job wait`` for "any job")
FLUX_JOBID_ANY = MAX_ID

#: encoding names, as ``flux job id --to`` and ``JobID.encode()`` take them
ENCODINGS = ("dec", "hex", "dothex", "kvs", "f58", "f58plain", "words", "emoji")

_TS_SHIFT = GENERATOR_BITS + SEQUENCE_BITS


class FluidError(OSError, ValueError):
    """A bad id or encoding name.  ``str(exc)`` is the message; ``exc.errno`` is set."""

    def __init__(self, message: str, errnum: int = errno.EINVAL):
        super().__init__(errnum, message)

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self):
        return (type(self), (self.strerror, self.errno))


class InvalidJobID(FluidError):
    """A string (or number) that is not a valid job id in any encoding."""


def _bad(orig: object, why: str) -> InvalidJobID:
    return InvalidJobID(f"invalid jobid '{orig}': {why}")


# ------------------------------------------------------------------ fields


def timestamp_of(fluid: int) -> int:
    """The 40-bit timestamp (ms since the instance epoch) of an id."""
    return fluid >> _TS_SHIFT


def generator_of(fluid: int) -> int:
    """The 14-bit generator id of an id."""
    return (fluid >> SEQUENCE_BITS) & MAX_GENERATOR


def sequence_of(fluid: int) -> int:
    """The 10-bit sequence number of an id."""
    return fluid & MAX_SEQUENCE


def make(timestamp: int, generator: int = 0, sequence: int = 0) -> int:
    """Compose an id from its three fields (each range-checked)."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise FluidError(f"FLUID timestamp {timestamp} out of range 0..{MAX_TIMESTAMP}")
    if not 0 <= generator <= MAX_GENERATOR:
        raise FluidError(f"FLUID generator id {generator} out of range 0..{MAX_GENERATOR}")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise FluidError(f"FLUID sequence {sequence} out of range 0..{MAX_SEQUENCE}")
    return (timestamp << _TS_SHIFT) | (generator << SEQUENCE_BITS) | sequence


# --------------------------------------------------------------- generator


def _clock_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class FluidGenerator:
    """Hands out strictly increasing FLUIDs for one generator id.

    ``timestamp`` is where the clock starts: the generator's timestamp is
    ``timestamp + (ms elapsed since construction)``, read from the monotonic clock, so ids
    do not depend on wall-clock time.  To continue after a restart without going backwards,
    build it with :meth:`after` from the largest id handed out so far (SPEC 1.1).

    Up to 1024 ids are handed out per millisecond; past that :meth:`generate` busy-waits
    for the next millisecond, as flux-core does.
    """

    __slots__ = ("generator_id", "_clock_zero", "_offset", "_timestamp", "_seq")

    def __init__(self, generator_id: int = 0, timestamp: int = 0):
        if isinstance(generator_id, bool) or not isinstance(generator_id, int) \
                or not 0 <= generator_id <= MAX_GENERATOR:
            raise FluidError(f"FLUID generator id {generator_id!r} out of range 0..{MAX_GENERATOR}")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) \
                or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise FluidError(f"FLUID timestamp {timestamp!r} out of range 0..{MAX_TIMESTAMP}")
        self.generator_id = generator_id
        self._clock_zero = _clock_ms()
        self._offset = timestamp
        self._timestamp = timestamp
        self._seq = 0

    @classmethod
    def after(cls, max_id: int, generator_id: int = 0) -> FluidGenerator:
        """A generator whose ids are all greater than ``max_id``.

        This is how job-ingest on rank 0 seeds itself from the job manager's ``max_jobid``
        (0 when there are no jobs): the starting timestamp is ``timestamp(max_id) + 1``.
        """
        if max_id < 0 or max_id > MAX_ID:
            raise FluidError(f"max id {max_id} out of range")
        return cls(generator_id, timestamp_of(max_id) + 1)

    def _update(self) -> int:
        now = _clock_ms() - self._clock_zero + self._offset
        if now > self._timestamp:
            self._timestamp = now
            self._seq = 0
        return self._timestamp

    @property
    def timestamp(self) -> int:
        """The current timestamp (what other generators should start from)."""
        return self._update()

    def generate(self) -> int:
        """The next id."""
        ts = self._update()
        while self._seq > MAX_SEQUENCE:  # 1024 ids this millisecond already
            ts = self._update()
        if ts > MAX_TIMESTAMP:
            raise OverflowError("FLUID timestamp space exhausted (40 bits)")
        seq = self._seq
        self._seq = seq + 1
        return (ts << _TS_SHIFT) | (self.generator_id << SEQUENCE_BITS) | seq

    next = generate  # alias: ``next_id=gen.next``


# ---------------------------------------------------------------- encoders

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUE = {c: i for i, c in enumerate(_B58)}
_F58_PREFIX = "\u0192"  # ƒ
_F58_MAX_DIGITS = 12
_MN_BASE = 1626
_MN_INDEX = {w: i for i, w in enumerate(MN_WORDS[:_MN_BASE])}
_EMOJI_VALUE = {c: i for i, c in enumerate(EMOJI)}
_EMOJI_BASE = len(EMOJI)  # 576
_EMOJI_MAX_DIGITS = 7


def _check(fluid: int) -> int:
    try:
        n = _index(fluid)
    except TypeError:
        raise TypeError(f"jobid must be an integer, not {type(fluid).__name__}") from None
    if n < 0 or n > MAX_ID:
        raise InvalidJobID(f"invalid jobid {n}: out of range 0..2^64-1")
    return n


def _utf8_locale() -> bool:
    import locale  # here, not at the top: most commands never print an f58 id

    try:
        codeset = locale.nl_langinfo(locale.CODESET)
    except (AttributeError, ValueError):  # pragma: no cover - non-POSIX
        codeset = locale.getpreferredencoding(False)
    return codeset.upper().replace("-", "") == "UTF8"


_ASCII_ENV = "FLUX_F58_FORCE_ASCII"
try:
    _ASCII_ENV_KEY = os.environ.encodekey(_ASCII_ENV)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _ASCII_ENV_KEY = _ASCII_ENV


def _force_ascii() -> bool:
    # os.environ's own __contains__ costs ~1us (it encodes the key every time); its
    # underlying dict answers the same question ~10x faster, and we stay correct if
    # os.environ has been replaced by a plain mapping.
    env = os.environ
    data = getattr(env, "_data", None)
    if data is not None:
        return _ASCII_ENV_KEY in data
    return _ASCII_ENV in env


def f58_prefix() -> str:
    """``ƒ``, or ``f`` when ``FLUX_F58_FORCE_ASCII`` is set or the locale is not UTF-8."""
    if _force_ascii() or not _utf8_locale():
        return "f"
    return _F58_PREFIX


def _b58(fluid: int) -> str:
    b58 = _B58
    s = ""
    while fluid >= 58:
        s = b58[fluid % 58] + s
        fluid //= 58
    return b58[fluid] + s


def encode_f58(fluid: int) -> str:
    """``ƒ`` + base58 (``f`` prefix in an ASCII locale or with FLUX_F58_FORCE_ASCII)."""
    return f58_prefix() + _b58(_check(fluid))


def encode_f58plain(fluid: int) -> str:
    """``f`` + base58, whatever the locale (used in the shell's service name)."""
    return "f" + _b58(_check(fluid))


def encode_dec(fluid: int) -> str:
    return str(_check(fluid))


def encode_hex(fluid: int) -> str:
    return f"0x{_check(fluid):x}"


def encode_dothex(fluid: int) -> str:
    """``xxxx.xxxx.xxxx.xxxx`` (lowercase, zero-padded): the KVS directory form."""
    try:
        return fluid.to_bytes(8, "big").hex(".", 2)
    except (OverflowError, AttributeError):
        _check(fluid)  # raises the right error
        raise


def encode_kvs(fluid: int) -> str:
    """``job.`` + dothex: the job's KVS directory."""
    try:
        return "job." + fluid.to_bytes(8, "big").hex(".", 2)
    except (OverflowError, AttributeError):
        _check(fluid)
        raise


def kvs_key(fluid: int, key: str | None = None) -> str:
    """The job's KVS directory, or a key inside it (``kvs_key(id, "eventlog")``)."""
    d = encode_kvs(fluid)
    return f"{d}.{key}" if key else d


def encode_words(fluid: int) -> str:
    """mnemonicode of the 8 id bytes in little-endian order: ``w-w-w--w-w-w``."""
    fluid = _check(fluid)
    w = MN_WORDS
    groups = []
    for group in (fluid & 0xFFFFFFFF, fluid >> 32):  # low 4 bytes first (little-endian)
        rest, first = divmod(group, _MN_BASE)
        third, second = divmod(rest, _MN_BASE)
        groups.append(f"{w[first]}-{w[second]}-{w[third]}")
    return f"{groups[0]}--{groups[1]}"


def encode_emoji(fluid: int) -> str:
    """Base 576 over the RFC 19 emoji table, most significant digit first."""
    fluid = _check(fluid)
    if fluid == 0:
        return EMOJI[0]
    digits = []
    while fluid:
        fluid, r = divmod(fluid, _EMOJI_BASE)
        digits.append(EMOJI[r])
    digits.reverse()
    return "".join(digits)


_ENCODERS = {
    "dec": encode_dec,
    "hex": encode_hex,
    "dothex": encode_dothex,
    "kvs": encode_kvs,
    "f58": encode_f58,
    "f58plain": encode_f58plain,
    "words": encode_words,
    "emoji": encode_emoji,
}


def encode(fluid: int, encoding: str = "dec") -> str:
    """Encode an id; ``encoding`` is one of :data:`ENCODINGS` (any case)."""
    try:
        fn = _ENCODERS[encoding]
    except (KeyError, TypeError):
        fn = _ENCODERS.get(str(encoding).lower()) if encoding is not None else encode_dec
        if fn is None:
            raise FluidError(f"unknown jobid encoding '{encoding}'"
                             f" (expected one of {', '.join(ENCODINGS)})", errno.EPROTO) from None
    return fn(fluid)


# ---------------------------------------------------------------- decoders

_DOTHEX = re.compile(r"([0-9a-fA-F]{1,4})\.([0-9a-fA-F]{1,4})\.([0-9a-fA-F]{1,4})\.([0-9a-fA-F]{1,4})")
_HEXDIGITS = re.compile(r"[0-9a-fA-F]+")
_WORD_SPLIT = re.compile(r"[^A-Za-z]+")


def decode_dothex(s: str, orig: object = None) -> int:
    m = _DOTHEX.fullmatch(s)
    if not m:
        raise _bad(s if orig is None else orig, "expected dothex form xxxx.xxxx.xxxx.xxxx")
    a, b, c, d = m.groups()
    return (int(a, 16) << 48) | (int(b, 16) << 32) | (int(c, 16) << 16) | int(d, 16)


def decode_words(s: str, orig: object = None) -> int:
    orig = s if orig is None else orig
    words = [w for w in _WORD_SPLIT.split(s) if w]
    if len(words) != 6:
        raise _bad(orig, f"expected 6 mnemonic words (w-w-w--w-w-w), got {len(words)}")
    idx = []
    for w in words:
        i = _MN_INDEX.get(w.lower())
        if i is None:
            raise _bad(orig, f"'{w}' is not a mnemonic word")
        idx.append(i)
    lo = idx[0] + idx[1] * _MN_BASE + idx[2] * _MN_BASE * _MN_BASE
    hi = idx[3] + idx[4] * _MN_BASE + idx[5] * _MN_BASE * _MN_BASE
    if lo > 0xFFFFFFFF or hi > 0xFFFFFFFF:
        raise _bad(orig, "mnemonic words do not encode a 64-bit value")
    return lo | (hi << 32)


def decode_f58(s: str, orig: object = None) -> int:
    orig = s if orig is None else orig
    if s.startswith(_F58_PREFIX) or s.startswith("f"):
        digits = s[1:]
    else:
        raise _bad(orig, "F58 must start with 'ƒ' or 'f'")
    if not digits:
        raise _bad(orig, "no base58 digits after the F58 prefix")
    if len(digits) > _F58_MAX_DIGITS:
        raise _bad(orig, f"more than {_F58_MAX_DIGITS} base58 digits")
    n = 0
    table = _B58_VALUE
    for ch in digits:
        v = table.get(ch)
        if v is None:
            raise _bad(orig, f"'{ch}' is not a base58 digit")
        n = n * 58 + v
    if n > MAX_ID:
        raise _bad(orig, "value does not fit in 64 bits")
    return n


def decode_emoji(s: str, orig: object = None) -> int:
    orig = s if orig is None else orig
    if not s or len(s) > _EMOJI_MAX_DIGITS:
        raise _bad(orig, f"emoji ids have 1 to {_EMOJI_MAX_DIGITS} emoji")
    n = 0
    for ch in s:
        v = _EMOJI_VALUE.get(ch)
        if v is None:
            raise _bad(orig, f"'{ch}' is not a FLUID emoji digit")
        n = n * _EMOJI_BASE + v
    if n > MAX_ID:
        raise _bad(orig, "value does not fit in 64 bits")
    return n


def decode_hex(s: str, orig: object = None) -> int:
    orig = s if orig is None else orig
    digits = s[2:] if s[:2] in ("0x", "0X") else s
    if not _HEXDIGITS.fullmatch(digits):
        raise _bad(orig, "expected 0x followed by hex digits")
    n = int(digits, 16)
    if n > MAX_ID:
        raise _bad(orig, "value does not fit in 64 bits")
    return n


def decode_dec(s: str, orig: object = None) -> int:
    orig = s if orig is None else orig
    if not (s.isascii() and s.isdigit()):
        raise _bad(orig, "not a number or a known jobid encoding")
    n = int(s)
    if n > MAX_ID:
        raise _bad(orig, "value does not fit in 64 bits")
    return n


def parse(text: str | bytes) -> int:
    """Decode a job id in any encoding, detected in SPEC 1.2's order.

    1. strip surrounding whitespace; 2. drop a leading ``job.``; then the first that applies:
    3. contains ``.`` -> dothex; 4. contains ``-`` -> words; 5. starts with ``ƒ``/``f`` -> F58;
    6. starts with an emoji (UTF-8 ``F0 9F``) -> emoji; 7. starts with ``0x`` -> hex;
    8. decimal.  Raises :class:`InvalidJobID` naming the string.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(text, "not valid UTF-8") from None
    elif not isinstance(text, str):
        raise TypeError(f"jobid string must be str or bytes, not {type(text).__name__}")
    s = text.strip()
    if not s:
        raise _bad(text, "empty string")
    if s.startswith("job."):
        s = s[4:]
        if not s:
            raise _bad(text, "nothing after 'job.'")
    if s.isdigit() and s.isascii():  # fast path; same result as step 8
        n = int(s)
        if n > MAX_ID:
            raise _bad(text, "value does not fit in 64 bits")
        return n
    if "." in s:
        return decode_dothex(s, text)
    if "-" in s:
        return decode_words(s, text)
    c = s[0]
    if c == _F58_PREFIX or c == "f":
        return decode_f58(s, text)
    if "\U0001f000" <= c <= "\U0001ffff":
        return decode_emoji(s, text)
    if s.startswith("0x"):
        return decode_hex(s, text)
    return decode_dec(s, text)


_DECODERS = {
    "dec": decode_dec,
    "hex": decode_hex,
    "dothex": decode_dothex,
    "kvs": lambda s, orig=None: decode_dothex(s[4:] if s.startswith("job.") else s, orig),
    "f58": decode_f58,
    "f58plain": decode_f58,
    "words": decode_words,
    "emoji": decode_emoji,
}


def decode(text: str, encoding: str) -> int:
    """Decode a string known to be in one encoding (no detection)."""
    fn = _DECODERS.get(str(encoding).lower())
    if fn is None:
        raise FluidError(f"unknown jobid encoding '{encoding}'"
                         f" (expected one of {', '.join(ENCODINGS)})", errno.EPROTO)
    return fn(text.strip())
