"""The PMI-1 simple wire protocol: newline-terminated `key=value` words.

A request or response is one line of space-separated words, each `name=value`
(split at the first `=`), the first naming the command: `cmd=put kvsname=K key=K
value=V`. `mcmd=spawn` requests span several lines up to `endcmd`.
"""

from __future__ import annotations

# the limits every server here announces with get_maxes (flux-core's; Slurm's
# kvsname_max is larger)
KVSNAME_MAX = 64
KEYLEN_MAX = 64
VALLEN_MAX = 1024
# the longest request line accepted: a put with the longest name, key and value
MAX_LINE = KVSNAME_MAX + KEYLEN_MAX + VALLEN_MAX + 64

# PMI-1 return codes (pmi.h)
PMI_SUCCESS = 0
PMI_FAIL = -1
PMI_ERR_INVALID_ARG = 3
PMI_ERR_INVALID_KEY = 4
PMI_ERR_INVALID_KEY_LENGTH = 5
PMI_ERR_INVALID_VAL = 6
PMI_ERR_INVALID_VAL_LENGTH = 7
PMI_ERR_INVALID_LENGTH = 8


class WireError(ValueError):
    """A request line that cannot be parsed."""


def parse(line: str) -> dict[str, str]:
    """`cmd=get kvsname=a key=b` -> {"cmd": "get", "kvsname": "a", "key": "b"}."""
    out: dict[str, str] = {}
    for word in line.split():
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise WireError(f"malformed word '{word}' (expected name=value)")
        out[name] = value
    if not out:
        raise WireError("empty request")
    return out


def format_line(cmd: str, **fields: object) -> bytes:
    """One response line: `cmd=CMD name=value ...\\n` (values must not contain spaces)."""
    words = [f"cmd={cmd}"] + [f"{k}={v}" for k, v in fields.items()]
    return (" ".join(words) + "\n").encode()


def clean(text: str) -> str:
    """Text safe inside one word of a line (an error message): no spaces or newlines."""
    return "_".join(text.split())
