"""Submission directives embedded in a script (RFC 36), as `flux batch` reads them.

A directive line starts with a sentinel matching ``^([^\\w]*)(flux|FLUX):`` (for
example ``#FLUX:`` or ``# flux:``); every directive of a file uses the same one.
Processing starts at the first directive and stops at the first non-blank line
that does not start with the sentinel's prefix; a directive after that point is an
error. The text after the sentinel is split like a POSIX shell would (``#`` starts
a comment), and ``\"\"\"``/``'''`` quote literals, which may span lines:

    # flux: --setattr=user.conf=\"\"\"
    # flux: [config]
    # flux:   item = "foo"
    # flux: \"\"\"

gives ``--setattr=user.conf=[config]\\n  item = "foo"\\n`` (the newline after the
opening quote is dropped, common indentation removed).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Iterable

SENTINEL = re.compile(r"^([^\w]*)(flux|FLUX):")
_TRIPLE = re.compile(r"(\"\"\"|''')(.*?)\1", re.S)


class DirectiveError(ValueError):
    """A malformed directive; the message names the line."""


class Directive:
    """One logical directive: its words and the line where it starts."""

    __slots__ = ("lineno", "args")

    def __init__(self, lineno: int, args: list[str]):
        self.lineno, self.args = lineno, args

    action = "SETARGS"  # flux-core's name for option directives

    def __repr__(self) -> str:
        return f"Directive(line {self.lineno}: {self.args!r})"


def _split(text: str, lineno: int) -> list[str]:
    """Shell words of a directive, triple-quoted literals kept whole."""
    literals: list[str] = []

    def keep(m: re.Match) -> str:
        literals.append(m.group(2))
        return f"\0{len(literals) - 1}\0"

    text = _TRIPLE.sub(keep, text)
    if '"""' in text or "'''" in text:
        raise DirectiveError(f"line {lineno}: unterminated triple-quoted string")
    try:
        words = shlex.split(text, comments=True)
    except ValueError as exc:
        raise DirectiveError(f"line {lineno}: {exc}") from None
    out = []
    for w in words:
        out.append(re.sub(r"\0(\d+)\0", lambda m: literals[int(m.group(1))], w))
    return out


def parse(text: str | Iterable[str]) -> list[Directive]:
    """The directives of a script, in order (DirectiveError on misuse)."""
    lines = text.splitlines() if isinstance(text, str) else [ln.rstrip("\n") for ln in text]
    sentinel = prefix = None
    stopped_at = 0
    out: list[Directive] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        m = SENTINEL.match(line)
        if sentinel is None:
            if m:
                sentinel, prefix = m.group(0), m.group(1)
            else:
                i += 1
                continue
        if m:
            if stopped_at:
                raise DirectiveError(f"line {lineno}: orphan directive after the end of the "
                                     f"directive block (line {stopped_at})")
            if m.group(0) != sentinel:
                raise DirectiveError(f"line {lineno}: directive sentinel '{m.group(0)}' differs "
                                     f"from the first one, '{sentinel}'")
            body = line[m.end():]
            start = lineno
            stripped = body.rstrip()
            opener = next((q for q in ('"""', "'''") if stripped.endswith(q)
                           and stripped.count(q) % 2 == 1), None)
            if opener:  # a multi-line literal: every line carries the sentinel
                block = []
                while True:
                    i += 1
                    if i >= len(lines):
                        raise DirectiveError(f"line {start}: unterminated multi-line string")
                    nm = SENTINEL.match(lines[i])
                    if not nm or nm.group(0) != sentinel:
                        raise DirectiveError(f"line {i + 1}: every line of a multi-line "
                                             f"string must start with '{sentinel}'")
                    part = lines[i][nm.end():]
                    if part.strip() == opener:
                        break
                    block.append(part)
                literal = textwrap.dedent("".join(ln + "\n" for ln in block))
                body = stripped[: -len(opener)] + opener + literal + opener
            words = _split(body, start)
            if words:
                out.append(Directive(start, words))
        elif line.strip() and not stopped_at and not line.startswith(prefix):
            stopped_at = lineno
        i += 1
    return out


class DirectiveParser:
    """flux-core's interface: ``DirectiveParser(fp)`` with ``.script`` (the text)
    and ``.directives`` (Directive objects with ``.action``, ``.args``, ``.lineno``)."""

    def __init__(self, fp):
        self.script = fp.read() if hasattr(fp, "read") else str(fp)
        self.directives = parse(self.script)
