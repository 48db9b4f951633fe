"""Output formats of Flux listing tools (`flux jobs -o`, ...), as flux-core's flux.util.

A format is a Python format string whose fields name attributes of the listed items
(``{id.f58:>12} {name:<10.10+}``), with these extensions:

- conversions ``!d`` (datetime; ``::`` separates the strftime format from the width),
  ``!D`` (ISO date), ``!F`` (Flux Standard Duration), ``!H`` (h:mm:ss), ``!P`` (percent)
- spec suffix ``h``: empty, zero, ``0s``, ``0:00:00`` or epoch values print as ``-``
- spec suffix ``+``: a truncated value ends with ``+``
- spec suffix ``W``: width counts wide (emoji, CJK) characters as two columns
- field prefixes ``?:`` (drop the column when every item is empty), ``+:`` (widen the
  column to its widest value) and ``?+:`` (both)
- a leading ``sort:KEY,-KEY2 `` sets the sort order
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

_NUMERIC_TYPES = "bcdoxXeEfFgGn%"

__all__ = ["AltField", "OutputFormat", "UtilDatetime", "UtilFormatter", "empty_outputs", "fsd",
           "wcswidth"]


def wcswidth(text: str) -> int:
    """Display width of text: East Asian wide/full-width characters take two columns,
    combining marks none."""
    w = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def fsd(secs: float) -> str:
    """Seconds as a short Flux Standard Duration, the way `flux jobs` shows times."""
    if math.isinf(secs):
        return "inf"
    if secs < 1.0e-3:
        return "0s"
    if secs < 10.0:
        return f"{secs:.03f}s"
    if secs < 60.0:
        return f"{secs:.4g}s"
    if secs < 3600.0:
        return f"{secs / 60.0:.4g}m"
    if secs < 86400.0:
        return f"{secs / 3600.0:.4g}h"
    return f"{secs / 86400.0:.4g}d"


def empty_outputs() -> tuple[str, ...]:
    """Formatted values that count as empty (for ``h`` and ``?:``)."""
    localepoch = datetime.fromtimestamp(0.0).strftime("%FT%T")
    return ("", "0s", "0.0", "0:00:00", "1970-01-01T00:00:00", localepoch)


class UtilDatetime(datetime):
    """A datetime whose format spec is ``STRFTIME::WIDTHSPEC`` (``{t!d:%b%d %R::>12}``);
    the epoch formats as empty."""

    def __format__(self, fmt: str) -> str:
        timefmt, sep, spec = fmt.partition("::")
        if self == datetime.fromtimestamp(0.0):
            result = ""
        else:
            result = self.strftime(timefmt or "%FT%T")
        if spec.endswith("h"):  # handled here: format_field runs before this method
            result = result or "-"
            spec = spec[:-1] + "s"
        if spec:
            return format(result, spec)
        return result


class UtilFormatter(string.Formatter):
    """string.Formatter with the Flux conversions and spec suffixes (see module doc)."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        empty = str(value) == ""
        try:
            if conversion == "d":
                return UtilDatetime.fromtimestamp(value if not empty else 0.0)
            if conversion == "D":
                if empty or not value:
                    return ""
                return datetime.fromtimestamp(value).strftime("%FT%T")
            if conversion == "F":
                return "" if empty else fsd(value)
            if conversion == "H":
                if empty:
                    return ""
                if 0 < value < 1:
                    value = 1  # never show a nonzero time as zero
                return str(timedelta(seconds=round(value)))
            if conversion == "P":
                if empty:
                    return ""
                pct = value * 100
                return f"{pct:.2f}%" if 0 < pct < 1 else f"{pct:.3g}%"
        except (TypeError, ValueError):
            if empty:
                return ""
            raise
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> str:
        mark_truncation = format_spec.endswith("+")
        if mark_truncation:
            format_spec = format_spec[:-1]
        if format_spec.endswith("h") and not isinstance(value, UtilDatetime):
            value = "-" if str(value) in empty_outputs() else str(value)
            format_spec = format_spec[:-1] + "s"
        if format_spec.endswith("W"):
            format_spec = format_spec[:-1] + "s"
            m = re.match(r"^([<>^])(\d+)s$", format_spec)
            if m and isinstance(value, str):
                extra = wcswidth(value) - len(value)
                width = int(m[2])
                if 0 < extra < width:
                    format_spec = f"{m[1]}{width - extra}s"
        if value is None:
            value = ""
        if isinstance(value, str) and format_spec and format_spec[-1] in _NUMERIC_TYPES:
            format_spec = format_spec[:-1]  # an empty value in a `:>6d` column
        out = super().format_field(value, format_spec)
        if mark_truncation and len(out) < len(str(value)):
            out = out[:-1] + "+"
        return out


class AltField:
    """A field with an ascii alternative (``{field.ascii}``)."""

    def __init__(self, default: str, ascii: str):
        self.default, self.ascii = default, ascii

    def __str__(self) -> str:
        return self.default

    def __format__(self, fmt: str) -> str:
        return format(str(self), fmt)


_SPEC_RE = re.compile(
    r"(?:(?P<fill>[\s\S])?(?P<align>[<>=^]))?(?P<sign>[- +])?(?P<pos_zero>z)?(?P<alt>#)?"
    r"(?P<zero_pad>0)?(?P<width_str>\d+)?(?P<grouping>[_,])?"
    r"(?:(?P<decimal>\.)(?P<precision_str>\d+))?(?P<type>[bcdeEfFgGnosxX%])?"
    r"(?P<hyphen>h)?(?P<wide>W)?(?P<truncate>\+)?")
_SPEC_PARTS = ("fill", "align", "sign", "pos_zero", "alt", "zero_pad", "width_str", "grouping",
               "decimal", "precision_str", "type", "hyphen", "wide", "truncate")
_SENTINELS = ("?+:", "?:", "+:")  # longest first


class FormatSpec:
    """A format spec split into its parts, so width and precision can be changed."""

    def __init__(self, spec: str):
        if "::" in spec:  # datetime spec: the width part follows '::'
            spec = spec.split("::", 1)[1]
        m = _SPEC_RE.fullmatch(spec)
        d = m.groupdict() if m else {}
        for k in _SPEC_PARTS:
            setattr(self, k, d.get(k) or "")

    @property
    def width(self) -> int | str:
        return int(self.width_str) if self.width_str else ""

    @width.setter
    def width(self, val: int) -> None:
        self.width_str = str(val)
        if self.type in ("", "s") and self.precision and self.precision < val:
            self.precision = val

    @property
    def precision(self) -> int:
        return int(self.precision_str) if self.precision_str else 0

    @precision.setter
    def precision(self, val: int) -> None:
        self.precision_str = str(val)

    def __str__(self) -> str:
        return "".join(str(getattr(self, k)) for k in _SPEC_PARTS)


class OutputFormat:
    """A parsed output format: header row, `?:`/`+:` column filtering, sorting, printing.

    ``headings`` maps every valid field name to its column heading (an unknown field is
    a ValueError naming it). Fields are prefixed with ``prepend`` (``"0."``) so the
    item is the first positional argument of ``format()``.
    """

    formatter: type[string.Formatter] = UtilFormatter
    headings: Mapping[str, str] = {}
    prepend = "0."

    class HeaderFormatter(UtilFormatter):
        """Formats the header row: a field name is looked up literally in the headings."""

        def get_field(self, field_name, args, kwargs):
            if field_name in kwargs:
                return kwargs[field_name], None
            return super().get_field(field_name, args, kwargs)

    FormatSpec = FormatSpec

    def __init__(self, fmt: str, headings: Mapping[str, str] | None = None,
                 prepend: str | None = "0.", nullify_expansion_sentinel: bool = False):
        if headings is not None:
            self.headings = headings
        if prepend is not None:
            self.prepend = prepend
        self.format_list = [[s or "" for s in t] for t in string.Formatter().parse(fmt)]
        self.sort_keys: list[tuple[str, bool]] = []
        if self.format_list and self.format_list[0][0].startswith("sort:"):
            text = self.format_list[0][0]
            keys, _, rest = text[5:].partition(" ")
            self.format_list[0][0] = rest
            self.set_sort_keys(keys)
            fmt = fmt[len(text) - len(rest):]
        self.fmt_orig = fmt
        self._fields = [f for _, f, _, _ in self.format_list if f]
        for field in self._fields:
            name = field[2:] if field.startswith("0.") else field
            if name and name not in self.headings:
                raise ValueError("Unknown format field: " + name)
        self.fmt = self.get_format_prepended(self.prepend, include_sort_prefix=False) \
            if self.prepend else fmt

    # ---------------------------------------------------------------- parts
    @property
    def fields(self) -> list[str]:
        """Fields used by the format, including sort keys (what a tool must fetch)."""
        out = set(self._fields)
        out.update(k for k, _ in self.sort_keys)
        return list(out)

    @staticmethod
    def _fmt_tuple(text: str, field: str, spec: str | None, conv: str | None) -> str:
        if not field:
            return text
        spec = ":" + spec if spec else ""
        conv = "!" + conv if conv else ""
        return f"{text}{{{field}{conv}{spec}}}"

    def _sort_prefix(self) -> str:
        if not self.sort_keys:
            return ""
        return "sort:" + ",".join(f"-{k}" if rev else k for k, rev in self.sort_keys) + " "

    def get_format_prepended(self, prepend: str, except_fields: Iterable[str] | None = None,
                             include_sort_prefix: bool = True,
                             nullify_expansion_sentinel: bool = False) -> str:
        """The format with ``prepend`` before every field name, optionally without some
        fields (their sentinels and spacing go with them)."""
        skip = set(except_fields or ())
        parts = []
        for text, field, spec, conv in self.format_list:
            if field in skip:
                kept = text.strip()
                if kept and kept not in _SENTINELS:
                    parts.append(text)
                continue
            if field and not field.startswith(prepend):
                field = prepend + field
            if nullify_expansion_sentinel and text.endswith("+:"):
                text, spec = "", ""
            parts.append(self._fmt_tuple(text, field, spec, conv))
        return (self._sort_prefix() if include_sort_prefix else "") + "".join(parts)

    def get_format(self, orig: bool = False, include_sort_prefix: bool = True) -> str:
        fmt = self.fmt_orig if orig else self.fmt
        return (self._sort_prefix() + fmt) if include_sort_prefix else fmt

    def copy(self, except_fields: Iterable[str] | None = None,
             nullify_expansion: bool = False) -> OutputFormat:
        return self.__class__(self.get_format_prepended("", except_fields,
                                                        nullify_expansion_sentinel=nullify_expansion),
                              headings=self.headings, prepend=self.prepend)

    # --------------------------------------------------------------- output
    def header_format(self) -> str:
        """The format for the header row: only alignment and width are kept."""
        parts = []
        for text, field, spec, _ in self.format_list:
            s = FormatSpec(spec)
            parts.append(self._fmt_tuple(text, field, f"{s.align}{s.width}", None))
        return "".join(parts)

    def header(self) -> str:
        return self.HeaderFormatter().format(self.header_format(), **self.headings)

    def format(self, obj: Any) -> str:
        try:
            return self.formatter().format(self.get_format(include_sort_prefix=False), obj)
        except KeyError as exc:
            raise KeyError(f"Invalid format field {exc} for {type(obj)}") from None

    def filter(self, items: Iterable[Any], no_header: bool = False) -> str:
        """The format after applying ``?:`` (drop columns empty for every item) and ``+:``
        (widen columns to their widest value, heading included unless no_header)."""
        kinds = {"?:": "filter", "+:": "maxwidth", "?+:": "both"}
        entries = []
        for index, (text, field, spec, conv) in enumerate(self.format_list):
            sentinel = next((s for s in _SENTINELS if text.endswith(s)), None)
            if not sentinel:
                continue
            fs = FormatSpec(spec)
            kind = kinds[sentinel]
            maxw = fs.width or 0
            if kind != "filter" and not no_header:
                maxw = max(maxw, len(self.headings.get(field, "")))
            entries.append({"fmt": self._fmt_tuple("", "0." + field, None, conv),
                            "index": index, "kind": kind, "maxwidth": maxw, "width": 0,
                            "spec": fs})
        if not entries:
            return self.get_format(orig=True)
        formatter = self.formatter()
        empty = empty_outputs()
        for item in items:
            for e in entries:
                out = formatter.format(e["fmt"], item)
                w = 0 if out in empty else wcswidth(out)
                e["maxwidth"] = max(e["maxwidth"], w)
                e["width"] = max(e["width"], w)
        remove = {e["index"] for e in entries if e["width"] == 0 and e["kind"] in ("filter", "both")}
        format_list = [list(x) for x in self.format_list]
        for e in entries:
            if e["index"] not in remove and e["kind"] in ("maxwidth", "both"):
                e["spec"].width = e["maxwidth"]
                format_list[e["index"]][2] = str(e["spec"])
        out = []
        for i, (text, field, spec, conv) in enumerate(format_list):
            if i in remove:
                continue
            for s in _SENTINELS:
                text = text.replace(s, "")
            out.append(self._fmt_tuple(text, field, spec, conv))
        return self._sort_prefix() + "".join(out)

    def set_sort_keys(self, sort_keys: str) -> None:
        """Sort by comma separated keys; ``-key`` sorts that key in reverse."""
        self.sort_keys = []
        for key in sort_keys.split(","):
            key = key.strip()
            reverse = key.startswith("-")
            if reverse:
                key = key[1:]
            if key not in self.headings:
                raise ValueError("Invalid sort key: " + key)
            self.sort_keys.append((key, reverse))

    def sort_items(self, items: list) -> list:
        """Sort items in place by the sort keys (values of mixed types sort apart)."""
        for key, reverse in reversed(self.sort_keys):
            items.sort(key=_sort_key(key), reverse=reverse)
        return items

    def print_items(self, items: list, no_header: bool = False,
                    pre: Callable[[Any], Any] | None = None,
                    post: Callable[[Any], Any] | None = None) -> None:
        """Filter the format on items, sort them, print the header and one line each."""
        formatter = self.__class__(self.filter(items, no_header=no_header),
                                   headings=self.headings, prepend=self.prepend)
        items = self.sort_items(items)
        if not no_header:
            print(formatter.header())
        for item in items:
            line = formatter.format(item)
            if not line or line.isspace():
                continue
            if pre is not None:
                pre(item)
            try:
                print(line)
            except UnicodeEncodeError:
                print(line.encode("utf-8", errors="surrogateescape").decode())
            if post is not None:
                post(item)


def _sort_key(key: str) -> Callable[[Any], tuple]:
    parts = key.split(".")

    def get(item: Any) -> tuple:
        v = item
        for p in parts:
            v = getattr(v, p, "")
        if isinstance(v, bool):
            return (0, int(v))
        if isinstance(v, int | float):
            return (0, v)
        return (1, str(v))

    return get
