"""Job ids (RFC 19 FLUID) for the SDK: :class:`JobID`, :func:`id_parse`, :func:`id_encode`.

``JobID`` is an ``int``: it compares, hashes, sorts and serializes to JSON as the plain
integer (job ids are JSON integers on the wire), while ``str(jobid)`` is the F58 form the
CLI prints.  Any encoding can be parsed::

    >>> JobID("ƒuZZybuNNy") == JobID("0017.e9fb.8df1.6c2e") == 6731191091817518
    True
    >>> JobID(1234).words
    'turtle-academy-academy--academy-academy-academy'
"""

from __future__ import annotations

from flux.core.job import fluid
from flux.core.job.fluid import ENCODINGS, FLUX_JOBID_ANY, InvalidJobID

__all__ = ["ENCODINGS", "FLUX_JOBID_ANY", "InvalidJobID", "JobID", "id_encode", "id_parse"]


def id_parse(jobid_str: str | bytes) -> int:
    """The integer id of a job id string in any encoding (SPEC 1.2 detection order).

    Raises :class:`InvalidJobID` (an ``OSError`` with errno EINVAL, and a ``ValueError``).
    """
    return fluid.parse(jobid_str)


def id_encode(jobid: int, encoding: str = "f58") -> str:
    """Encode an id as ``dec``, ``hex``, ``dothex``, ``kvs``, ``f58``, ``f58plain``,
    ``words`` or ``emoji``.  An unknown encoding raises an ``OSError`` with errno EPROTO
    (also a ``ValueError``)."""
    return fluid.encode(jobid, encoding)


class JobID(int):
    """A job id: an ``int`` built from an integer or from any RFC 19 string encoding.

    ``JobID(1234)``, ``JobID("ƒNH")``, ``JobID("fNH")``, ``JobID("0x4d2")``,
    ``JobID("0000.0000.0000.04d2")``, ``JobID("job.0000.0000.0000.04d2")``,
    ``JobID("turtle-academy-academy--academy-academy-academy")`` and ``JobID("😁👌")``
    are all the same id.  ``str()`` gives F58; the properties give every other form.
    """

    def __new__(cls, value: int | str | bytes) -> JobID:
        if isinstance(value, int):
            if isinstance(value, bool):
                raise TypeError("a job id cannot be a bool")
            if value < 0 or value > fluid.MAX_ID:
                raise InvalidJobID(f"invalid jobid {int(value)}: out of range 0..2^64-1")
            self = super().__new__(cls, value)
            self.orig_str = value.orig_str if isinstance(value, JobID) else str(int(value))
            return self
        if isinstance(value, (str, bytes, bytearray)):
            self = super().__new__(cls, fluid.parse(value))
            self.orig_str = value if isinstance(value, str) else bytes(value).decode("utf-8")
            return self
        raise TypeError(f"a job id must be an int or a string, not {type(value).__name__}")

    def encode(self, encoding: str = "dec") -> str:
        """This id in another encoding (see :func:`id_encode`)."""
        return fluid.encode(int(self), encoding)

    @property
    def dec(self) -> str:
        """Decimal: ``6731191091817518``."""
        return int.__repr__(self)

    @property
    def hex(self) -> str:
        """``0x`` + lowercase hex: ``0x17e9fb8df16c2e``."""
        return f"0x{int(self):x}"

    @property
    def dothex(self) -> str:
        """Dotted hex: ``0017.e9fb.8df1.6c2e``."""
        return self.to_bytes(8, "big").hex(".", 2)

    @property
    def kvs(self) -> str:
        """The job's KVS directory: ``job.0017.e9fb.8df1.6c2e``."""
        return "job." + self.to_bytes(8, "big").hex(".", 2)

    @property
    def f58(self) -> str:
        """F58: ``ƒuZZybuNNy`` (``f`` prefix in an ASCII locale or with FLUX_F58_FORCE_ASCII)."""
        return fluid.f58_prefix() + fluid._b58(int(self))

    @property
    def f58plain(self) -> str:
        """F58 with an ASCII ``f`` prefix whatever the locale: ``fuZZybuNNy``."""
        return "f" + fluid._b58(int(self))

    @property
    def words(self) -> str:
        """Mnemonic words: ``reform-remote-galileo--heart-package-academy``."""
        return fluid.encode_words(int(self))

    @property
    def emoji(self) -> str:
        """Base-576 emoji."""
        return fluid.encode_emoji(int(self))

    @property
    def orig(self) -> str:
        """The string (or the decimal number) this JobID was made from."""
        return self.orig_str

    def __str__(self) -> str:
        return fluid.f58_prefix() + fluid._b58(int(self))

    def __repr__(self) -> str:
        return f"JobID({int.__repr__(self)})"

    def __reduce__(self):
        return (JobID, (int(self),))
