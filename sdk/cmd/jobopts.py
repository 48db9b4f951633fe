"""Options shared by the submission commands (``flux submit``, ``run``, ``bulksubmit``,
and the batch/alloc family) and how they become a jobspec (SPEC 2.5, 10.1).

Parsing is POSIX style: options stop at the first word that is not an option, which
starts the job's command.  Resource counts are kept as strings until the jobspec is
built so that ``bulksubmit`` can substitute ``{}`` placeholders into them.

Only what every submission needs is imported at module load; the rest (constraint
parsing, URL parsing, dates) is imported by the option that uses it.
"""

from __future__ import annotations

import argparse
import os
import sys

from flux.cmd.util import Parser

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    from typing import Any

# ------------------------------------------------------------------ parsers


class _EnvRuleAction(argparse.Action):
    """--env-remove/--env-file: append to the ordered --env rule list with a prefix."""

    def __init__(self, *args, prefix: str = "", **kw):
        self.prefix = prefix
        super().__init__(*args, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "env", None) or [])
        items.append(self.prefix + values)
        namespace.env = items


class _BeginTimeAction(argparse.Action):
    """--begin-time: becomes a `begin-time:<epoch>` dependency."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            when = parse_datetime(values)
        except ValueError as exc:
            parser.error(f"--begin-time={values}: {exc}")
        items = list(getattr(namespace, "dependency", None) or [])
        items.append(f"begin-time:{when}")
        namespace.dependency = items


def add_common_options(parser: argparse.ArgumentParser, exclude_io: bool = False) -> None:
    """Options of every submission command (SPEC 10.1 "shared by all")."""
    add = parser.add_argument
    io_help = argparse.SUPPRESS if exclude_io else None
    add("-q", "--queue", metavar="NAME", help="Submit a job to a specific named queue")
    add("-B", "--bank", metavar="BANK", help="Submit a job to a specific named bank")
    add("-t", "--time-limit", metavar="MIN|FSD",
        help="Time limit in minutes when no units provided, otherwise in Flux standard "
             "duration, e.g. 30s, 2d, 1.5h")
    add("--urgency", metavar="N", default="16",
        help="Set job urgency (0-31), hold=0, default=16, expedite=31")
    add("--job-name", metavar="NAME", help="Set an optional name for job to NAME")
    add("-o", "--setopt", action="append", metavar="OPT",
        help="Set shell option OPT. An optional value is supported with OPT=VAL "
             "(default VAL=1) (multiple use OK)")
    add("-S", "--setattr", action="append", metavar="ATTR",
        help="Set job attribute ATTR. An optional value is supported with ATTR=VAL "
             "(default VAL=1). If ATTR starts with ^, then VAL is a file containing JSON "
             "(multiple use OK)")
    add("--add-file", action="append", metavar="[NAME=]PATH",
        help="Add a file at PATH with optional NAME to jobspec, extracted to "
             "{{tmpdir}}/NAME (multiple use OK)")
    add("--dependency", action="append", metavar="URI",
        help="Set an RFC 26 dependency URI for this job")
    add("--requires", action="append", metavar="CONSTRAINT",
        help="Specify job constraints in RFC 35 syntax")
    add("--begin-time", action=_BeginTimeAction, metavar="+FSD|TIME",
        help="Set minimum start time as offset in FSD (e.g. +1h) or an absolute TIME "
             "(e.g. 15:30, 2025-01-01T08:00)")
    add("--env", action="append", metavar="RULE",
        help="Control how environment variables are exported: -PATTERN removes, "
             "^FILE reads rules, VAR=VAL sets, PATTERN copies (multiple use OK, in order)")
    add("--env-remove", action=_EnvRuleAction, prefix="-", metavar="PATTERN",
        help="Remove environment variables matching PATTERN (glob, or /regex/)")
    add("--env-file", action=_EnvRuleAction, prefix="^", metavar="FILE",
        help="Read a set of environment rules from FILE (multiple use OK)")
    add("--rlimit", action="append", metavar="RULE",
        help="Control propagation of soft resource limits, e.g. -*,core or core=16")
    add("--input", metavar="FILENAME",
        help=io_help or "Redirect job stdin from FILENAME, bypassing KVS")
    add("--output", metavar="FILENAME",
        help=io_help or "Redirect job stdout to FILENAME, bypassing KVS")
    add("--error", metavar="FILENAME",
        help=io_help or "Redirect job stderr to FILENAME, bypassing KVS")
    add("-u", "--unbuffered", action="store_true", help="Disable buffering of input and output")
    add("-l", "--label-io", action="store_true",
        help=io_help or "Add rank labels to stdout, stderr lines")
    add("--cwd", metavar="DIRECTORY", help="Set job working directory")
    add("--flags", action="append", metavar="FLAGS",
        help="Set comma separated list of job submission flags: debug, waitable, novalidate")
    add("--signal", metavar="[SIG][@TIME]",
        help="Deliver signal SIG at TIME before job expiration (default SIGUSR1@60s)")
    add("--dry-run", action="store_true", help="Don't actually submit job, just emit jobspec")
    add("--quiet", action="store_true", help="Do not print jobid to stdout on submission")
    add("--debug", action="store_true", help="Enable parallel debugger support (stop tasks in exec)")


def add_resource_options(parser: argparse.ArgumentParser) -> None:
    """Per-task and per-resource options of submit/run/bulksubmit."""
    parser.add_argument("--taskmap", metavar="URI",
                        help="Task mapping scheme SCHEME[:VALUE]: block, cyclic, cyclic:N, "
                             "manual:TASKMAP, hostfile:FILE (default: block)")
    g = parser.add_argument_group("Common resource options")
    g.add_argument("-N", "--nodes", metavar="N", help="Number of nodes to allocate")
    g.add_argument("-x", "--exclusive", action="store_true",
                   help="With -N, --nodes, allocate nodes exclusively")
    g = parser.add_argument_group("Per task options",
                                  "Should not be combined with per-resource options.")
    g.add_argument("-n", "--ntasks", metavar="N", help="Number of tasks to start")
    g.add_argument("-c", "--cores-per-task", metavar="N", help="Number of cores to allocate per task")
    g.add_argument("-g", "--gpus-per-task", metavar="N", help="Number of GPUs to allocate per task")
    g = parser.add_argument_group("Per resource options",
                                  "Should not be combined with per-task options.")
    g.add_argument("--cores", metavar="N", help="Request a total number of cores")
    g.add_argument("--tasks-per-node", metavar="N", help="Force number of tasks per node")
    g.add_argument("--tasks-per-core", metavar="N", help="Force number of tasks per core")
    g.add_argument("--gpus-per-node", metavar="N", help="Request a number of GPUs per node with --nodes")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="Increase verbosity on stderr (multiple use OK)")


def add_bulk_options(parser: argparse.ArgumentParser) -> None:
    """Copies, waiting and progress: submit and bulksubmit."""
    add = parser.add_argument
    add("--cc", metavar="IDSET",
        help="Replicate job for each ID in IDSET (FLUX_JOB_CC=ID is set in each job)")
    add("--bcc", metavar="IDSET", help="Like --cc, but FLUX_JOB_CC is not set")
    add("--wait-event", metavar="NAME", dest="wait",
        help="Wait for event NAME for all jobs after submission (exec.NAME: exec eventlog)")
    add("--wait", action="store_const", const="clean",
        help="Wait for all jobs to complete after submission (same as --wait-event=clean)")
    add("--watch", action="store_true", help="Watch all job output (implies --wait)")
    add("--log", metavar="FILE", help="Print program log messages (e.g. jobids) to FILE")
    add("--log-stderr", metavar="FILE", help="Separate stderr messages into FILE")
    add("--progress", action="store_true",
        help="Show progress of job submission or completion (with --wait)")
    add("--jps", action="store_true", help="With --progress, show job throughput")


_WIDTH: list[int] = []


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the terminal width looked up once.

    argparse builds a formatter for every ``add_argument`` and each asks shutil for
    the terminal size: with ~50 options that is a noticeable part of ``flux run``."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None):
        if width is None:
            if not _WIDTH:
                try:
                    cols = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
                except (ValueError, OSError):
                    cols = 80
                _WIDTH.append(max(cols - 2, 20))
            width = _WIDTH[0]
        super().__init__(prog, indent_increment, max_help_position, width)


def make_parser(prog: str, usage: str | None = None, description: str | None = None) -> Parser:
    # flux-core's submission commands use argparse's default: an unambiguous prefix of
    # a long option is accepted (Flux's tutorials write `--out`/`--err`)
    return Parser(prog, usage=usage or f"{prog} [OPTIONS...] COMMAND [ARGS...]",
                  description=description, formatter_class=HelpFormatter, allow_abbrev=True)


def parse_posix(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse options up to the first non-option word; the rest is ``args.command``.

    argparse keeps a leading ``--`` in a REMAINDER positional: drop it."""
    args = parser.parse_args(argv)
    cmd = getattr(args, "command", None)
    if cmd and cmd[0] == "--":
        args.command = cmd[1:]
    return args


# ------------------------------------------------------------- conversions


def decode_signal(val: str | int) -> int:
    """A signal number from a number, ``SIGUSR1`` or ``USR1``."""
    import signal

    if isinstance(val, int):
        return val
    try:
        return int(val)
    except ValueError:
        pass
    name = val.upper()
    for cand in (name, "SIG" + name):
        num = getattr(signal, cand, None)
        if isinstance(num, int):
            return int(num)
    raise ValueError(f"signal '{val}' is invalid")


def decode_duration(val: str | float) -> float:
    if isinstance(val, (int, float)):
        return float(val)
    try:
        return float(val)
    except ValueError:
        from flux.core.util.fsd import parse_fsd

        return parse_fsd(val)


def parse_signal_option(arg: str | None) -> dict:
    """--signal=[SIG][@TIME] -> {signum, timeleft} (default SIGUSR1 at 60 s)."""
    sig, tleft = "SIGUSR1", "60"
    if arg is not None:
        s, _, t = arg.partition("@")
        sig = s or sig
        tleft = t or tleft
    try:
        signum = decode_signal(sig)
        if signum <= 0:
            raise ValueError("signal must be > 0")
        timeleft = decode_duration(tleft)
    except ValueError as exc:
        raise ValueError(f"--signal={arg}: {exc}") from None
    return {"signum": signum, "timeleft": timeleft}


def parse_datetime(text: str) -> float:
    """Epoch seconds of ``+FSD`` (from now), ``now``, an epoch number, an ISO date/time,
    or a time of day (``15:30``, ``3pm``, ``3:30pm``: the next such time)."""
    import datetime
    import re
    import time

    s = text.strip()
    if s.startswith("+"):
        from flux.core.util.fsd import parse_fsd

        return time.time() + parse_fsd(s[1:])
    if s.lower() == "now":
        return time.time()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(s)
        return dt.timestamp()
    except ValueError:
        pass
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap]m)?", s.lower())
    if m:
        hour, minute, sec = int(m[1]), int(m[2] or 0), int(m[3] or 0)
        if m[4]:
            if not 1 <= hour <= 12:
                raise ValueError(f"invalid hour in '{text}'")
            hour = hour % 12 + (12 if m[4] == "pm" else 0)
        if hour > 23 or minute > 59 or sec > 59:
            raise ValueError(f"invalid time of day '{text}'")
        now = datetime.datetime.now()
        dt = now.replace(hour=hour, minute=minute, second=sec, microsecond=0)
        if dt < now:
            dt += datetime.timedelta(days=1)
        return dt.timestamp()
    raise ValueError(f"could not parse date/time '{text}' (use +FSD, ISO 8601 or HH:MM)")


def parse_urgency(text: str | int) -> int:
    names = {"hold": 0, "default": 16, "expedite": 31}
    if isinstance(text, str) and text.lower() in names:
        return names[text.lower()]
    try:
        urgency = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"--urgency: invalid value '{text}' (0-31, hold, default, expedite)") from None
    if not 0 <= urgency <= 31:
        raise ValueError(f"--urgency: {urgency} is out of range 0-31")
    return urgency


def parse_flags(flag_args: list[str] | None) -> dict:
    out = {"debug": False, "waitable": False, "novalidate": False}
    for item in flag_args or []:
        for flag in item.split(","):
            if flag not in out:
                raise ValueError(f"--flags: Unknown flag {flag}")
            out[flag] = True
    return out


def parse_jobspec_keyval(label: str, keyval: str) -> tuple[str, Any]:
    """KEY[=VAL] of --setopt/--setattr: no value means 1; JSON values are decoded;
    ``^KEY=FILE`` reads the value as JSON from FILE."""
    import json

    key, eq, val = keyval.partition("=")
    value: Any = val if eq else 1
    if key.startswith("^"):
        key = key.lstrip("^")
        if not eq:
            raise ValueError(f"{label}: ^{key} needs =FILE")
        try:
            with open(val) as fp:
                value = json.load(fp)
        except OSError as exc:
            raise ValueError(f"{label}: {val}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{label}: {val}: {exc}") from None
    elif eq:
        try:
            value = json.loads(val)
        except json.JSONDecodeError:
            value = val
    if not key:
        raise ValueError(f"{label}: missing key in '{keyval}'")
    return key, value


# ------------------------------------------------------------- environment


def _env_regex(pattern: str):
    import re

    if pattern.startswith("/"):
        return re.compile(pattern[1:].rstrip("/"))
    import fnmatch

    return re.compile(fnmatch.translate(pattern))


def filter_env(env: dict, pattern: str, keep_matching: bool = False) -> dict:
    rx = _env_regex(pattern)
    return {k: v for k, v in env.items() if bool(rx.match(k)) == keep_matching}


def filtered_environment(rules: list[str] | None, environ: dict | None = None,
                         expand: dict | None = None) -> tuple[dict, dict]:
    """Apply --env/--env-remove/--env-file rules in order to a copy of the current
    environment.  Returns (environment, env-expand): values holding ``{{...}}`` mustache
    templates are rendered by the job shell, so they go to ``shell.options.env-expand``."""
    environ = dict(os.environ) if environ is None else environ
    expand = {} if expand is None else expand
    for rule in rules or []:
        if rule.startswith("-"):
            environ = filter_env(environ, rule[1:])
            for k in [k for k in expand if _env_regex(rule[1:]).match(k)]:
                del expand[k]
        elif rule.startswith("^"):
            path = os.path.expanduser(rule[1:])
            try:
                with open(path) as fp:
                    lines = [ln.strip() for ln in fp]
            except OSError as exc:
                raise ValueError(f"--env-file={rule[1:]}: {exc.strerror}") from None
            environ, expand = filtered_environment([ln for ln in lines if ln and not ln.startswith("#")],
                                                   environ, expand)
        else:
            var, eq, val = rule.partition("=")
            if not eq:
                for k, v in filter_env(dict(os.environ), var, keep_matching=True).items():
                    environ.setdefault(k, v)
                continue
            if "{{" in val:
                expand[var] = val
                environ.pop(var, None)
                continue
            from string import Template

            try:
                environ[var] = Template(val).substitute({**os.environ, **environ})
            except KeyError as exc:
                raise ValueError(f"--env: Variable {exc} not found in {rule}") from None
            except ValueError:
                raise ValueError(f"--env: Unable to substitute {rule}") from None
            expand.pop(var, None)
    return environ, expand


_RLIMIT_SKIP = ("memlock", "ofile", "msgqueue", "nice", "rtprio", "rttime", "sigpending")


def _all_rlimits() -> dict[str, int]:
    import resource

    out = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            out[name[7:].lower()] = resource.getrlimit(getattr(resource, name))[0]
    return out


def filtered_rlimits(rules: list[str] | None) -> dict[str, int]:
    """Soft limits to propagate: all except memlock, ofile, msgqueue, nice, rtprio,
    rttime, sigpending, then --rlimit rules (-PATTERN drops, NAME copies, NAME=VAL sets)."""
    import fnmatch

    current = _all_rlimits()
    limits = {k: v for k, v in current.items() if k not in _RLIMIT_SKIP}
    for item in rules or []:
        for rule in item.split(","):
            if not rule:
                continue
            if rule.startswith("-"):
                pat = rule[1:].lower()
                limits = {k: v for k, v in limits.items() if not fnmatch.fnmatch(k, pat)}
                continue
            name, eq, val = rule.partition("=")
            name = name.lower()
            if not eq:
                matched = {k: v for k, v in current.items() if fnmatch.fnmatch(k, name)}
                if not matched:
                    raise ValueError(f'No corresponding rlimit matching "{name}"')
                limits.update(matched)
                continue
            if name not in current:
                raise ValueError(f'Invalid rlimit "{name}"')
            if val in ("unlimited", "infinity", "inf"):
                import resource

                limits[name] = resource.RLIM_INFINITY
            else:
                try:
                    limits[name] = int(val)
                except ValueError:
                    raise ValueError(f"Invalid value in {name}={val}") from None
    return limits


# ------------------------------------------------------------ dependencies


def _try_number(value: str) -> Any:
    for typ in (int, float):
        try:
            return typ(value)
        except ValueError:
            continue
    return value


def uri_entry(uri: str, what: str) -> dict:
    """``scheme:value[?k=v&...]`` -> ``{"scheme", "value", k: v...}`` (numbers decoded)."""
    import re
    from urllib.parse import parse_qs

    scheme, _, rest = uri.partition(":")
    value, _, query = rest.partition("?")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-_]*", scheme):
        raise ValueError(f'Invalid {what} URI "{uri}"')
    entry: dict[str, Any] = {"scheme": scheme, "value": value}
    for key, vals in parse_qs(query).items():
        entry[key] = [_try_number(x) for x in vals] if len(vals) > 1 else _try_number(vals[0])
    return entry


# ------------------------------------------------------ constraints (RFC 35)


class ConstraintSyntaxError(ValueError):
    pass


class ConstraintParser:
    """RFC 35 query syntax -> RFC 31 constraint object.

    Terms are ``[op:]operand`` (quoted operands allowed), joined by whitespace or
    ``&``/``&&``/``and`` (AND, binds tighter) and ``|``/``||``/``or`` (OR); ``not EXPR``
    and ``-term`` negate; parentheses group.  ``operator_map[None]`` is the default
    operator; ``split_values`` splits an operand into several values; AND-ed terms of an
    operator in ``combined_terms`` merge into one value list."""

    operator_map: dict = {}
    split_values: dict = {}
    combined_terms: set = set()

    def parse(self, query: str) -> dict:
        self.query = query
        self.toks = self._lex(query)
        self.pos = 0
        if not self.toks:
            raise ConstraintSyntaxError(f"Unexpected end of input in '{query}'")
        result = self._or()
        if self.pos < len(self.toks):
            kind, val, at = self.toks[self.pos]
            if kind == ")":
                raise ConstraintSyntaxError(f"Mismatched parentheses at position {at}")
            raise ConstraintSyntaxError(f"Invalid token '{val}' at position {at}")
        return result

    @staticmethod
    def _lex(s: str) -> list[tuple[str, str, int]]:
        import re

        toks: list[tuple[str, str, int]] = []
        i, n = 0, len(s)
        pending = None  # an 'op:' token waiting for a quoted operand
        while i < n:
            c = s[i]
            if c.isspace():
                if pending is not None:
                    raise ConstraintSyntaxError(f"Missing argument to token '{pending[1]}'")
                i += 1
                continue
            if c in "'\"":
                j = s.find(c, i + 1)
                if j < 0:
                    raise ConstraintSyntaxError(f"Unclosed quote '{c}' at position {i}")
                word = s[i + 1:j]
                if pending is not None:
                    toks.append(("T", pending[1] + word, pending[2]))
                    pending = None
                else:
                    toks.append(("T", word, i))
                i = j + 1
                continue
            if pending is not None:
                raise ConstraintSyntaxError(f"Missing argument to token '{pending[1]}'")
            if c == "-":
                toks.append(("-", c, i))
                i += 1
                continue
            if c in "()":
                toks.append((c, c, i))
                i += 1
                continue
            m = re.match(r"&{1,2}|and\b", s[i:])
            if m:
                toks.append(("&", m[0], i))
                i += len(m[0])
                continue
            m = re.match(r"\|{1,2}|or\b", s[i:])
            if m:
                toks.append(("|", m[0], i))
                i += len(m[0])
                continue
            m = re.match(r"not\b", s[i:])
            if m:
                toks.append(("!", m[0], i))
                i += 3
                continue
            m = re.match(r"[^()|&\s\"']+", s[i:])
            word = m[0]
            if word.endswith(":") and i + len(word) < n and s[i + len(word)] in "'\"":
                pending = ("T", word, i)
            elif word.endswith(":"):
                raise ConstraintSyntaxError(f"Missing argument to token '{word}'")
            else:
                toks.append(("T", word, i))
            i += len(word)
        if pending is not None:
            raise ConstraintSyntaxError(f"Missing argument to token '{pending[1]}'")
        return toks

    def _peek(self) -> str | None:
        return self.toks[self.pos][0] if self.pos < len(self.toks) else None

    def _or(self) -> dict:
        left = self._and()
        while self._peek() == "|":
            self.pos += 1
            right = self._and()
            if "or" in left:
                left["or"].append(right)
            else:
                left = {"or": [left, right]}
        return left

    def _and(self) -> dict:
        left = self._unary()
        while self._peek() in ("&", "T", "(", "!", "-"):
            if self._peek() == "&":
                self.pos += 1
            left = self._combine(left, self._unary())
        return left

    def _unary(self) -> dict:
        kind = self._peek()
        if kind is None:
            raise ConstraintSyntaxError(f"Unexpected end of input in '{self.query}'")
        tok = self.toks[self.pos]
        if kind == "!":
            self.pos += 1
            return {"not": [self._unary()]}
        if kind == "-":
            self.pos += 1
            if self._peek() != "T":
                raise ConstraintSyntaxError(f"Invalid token after '-' at position {tok[2]}")
            return {"not": [self._term()]}
        if kind == "(":
            self.pos += 1
            inner = self._or()
            if self._peek() != ")":
                raise ConstraintSyntaxError(f"Unclosed parenthesis in position {tok[2]}")
            self.pos += 1
            return inner
        if kind == "T":
            return self._term()
        raise ConstraintSyntaxError(f"Invalid token '{tok[1]}' at position {tok[2]}")

    def _term(self) -> dict:
        import re

        _, word, _at = self.toks[self.pos]
        self.pos += 1
        op, colon, value = word.partition(":")
        if not colon:
            if None not in self.operator_map:
                raise ConstraintSyntaxError(f'Missing required operator in "{word}"')
            op, value = self.operator_map[None], word
        elif op in self.operator_map:
            op = self.operator_map[op]
        bad = re.search(r"[^\w.+@-]", op)
        if bad:
            raise ConstraintSyntaxError(f"invalid character '{bad[0]}' in operator '{op}:'")
        if op in self.split_values:
            return {op: value.split(self.split_values[op])}
        return {op: [value]}

    def _combine(self, p1: dict, p2: dict) -> dict:
        entries = [p1, p2]
        if "and" in p1:
            p1["and"].append(p2)
            entries = [p1]
        combined: dict = {}
        terms = []
        for entry in entries:
            key = next(iter(entry))
            if key not in self.combined_terms:
                terms.append(entry)
            elif key not in combined:
                combined[key] = entry[key]
                terms.append(entry)
            else:
                combined[key].extend(entry[key])
        return terms[0] if len(terms) == 1 else {"and": terms}


class SubmitConstraintParser(ConstraintParser):
    """--requires: bare terms are properties; host/hosts -> hostlist, rank -> ranks."""

    operator_map = {None: "properties", "host": "hostlist", "hosts": "hostlist", "rank": "ranks"}
    split_values = {"properties": ","}
    combined_terms = {"properties"}


# ---------------------------------------------------------------- jobspec

_INT_ARGS = ("ntasks", "nodes", "cores", "cores_per_task", "gpus_per_task", "tasks_per_node",
             "tasks_per_core", "gpus_per_node")


def _ints(args: Any) -> None:
    for name in _INT_ARGS:
        value = getattr(args, name, None)
        if value is None or isinstance(value, int):
            continue
        try:
            setattr(args, name, int(value))
        except ValueError:
            opt = name.replace("_", "-")
            raise ValueError(f"--{opt}: invalid int value '{value}'") from None


def init_jobspec(args: Any):
    """The resource request and command of submit/run/bulksubmit (SPEC 2.5)."""
    from flux.job.jobspec import JobspecV1

    if not args.command:
        raise ValueError("job command and arguments are missing")
    _ints(args)
    if args.tasks_per_node is not None and args.tasks_per_core is not None:
        raise ValueError("Do not specify both the number of tasks per node and per core")
    per_type = per_count = None
    if args.tasks_per_node is not None:
        if args.tasks_per_node < 1:
            raise ValueError("--tasks-per-node must be >= 1")
        per_type, per_count = "node", args.tasks_per_node
    elif args.tasks_per_core is not None:
        if args.tasks_per_core < 1:
            raise ValueError("--tasks-per-core must be >= 1")
        per_type, per_count = "core", args.tasks_per_core
    if args.gpus_per_node and not args.nodes:
        raise ValueError("--gpus-per-node requires --nodes")
    exclusive = args.exclusive
    if per_type is not None or args.gpus_per_node is not None or args.cores is not None:
        if args.ntasks is not None or args.cores_per_task is not None or args.gpus_per_task:
            raise ValueError("Per-resource options can't be used with per-task options."
                             " (See --help for details)")
        if args.nodes and args.cores is None:
            exclusive = True
        return JobspecV1.per_resource(
            args.command, ncores=args.cores, nnodes=args.nodes, per_resource_type=per_type,
            per_resource_count=per_count, gpus_per_node=args.gpus_per_node, exclusive=exclusive,
            environment={})
    ntasks = args.ntasks
    if not ntasks and args.nodes:
        ntasks = args.nodes
        exclusive = True
    return JobspecV1.from_command(
        args.command, num_tasks=ntasks or 1, cores_per_task=args.cores_per_task or 1,
        gpus_per_task=args.gpus_per_task, num_nodes=args.nodes, exclusive=exclusive,
        environment={})


def _is_idset(text: str) -> bool:
    from flux.core.util import idset

    try:
        idset.decode(text)
        return True
    except ValueError:
        return False


def jobspec_create(args: Any, init=init_jobspec):
    """Build the jobspec from parsed options (the command's ``init`` makes the resource
    request); every option of SPEC 2.5 lands where flux-core puts it."""
    jobspec = init(args)
    environ, expand = filtered_environment(args.env)
    jobspec.environment = environ
    if expand:
        jobspec.setattr_shell_option("env-expand", expand)
    jobspec.cwd = args.cwd if args.cwd is not None else os.getcwd()
    rlimits = filtered_rlimits(args.rlimit)
    if rlimits:
        jobspec.setattr_shell_option("rlimit", rlimits)
    if args.signal:
        jobspec.setattr_shell_option("signal", parse_signal_option(args.signal))
    if getattr(args, "taskmap", None) is not None:
        jobspec.setattr_shell_option("taskmap", uri_entry(args.taskmap, "taskmap"))
    if args.dependency is not None:
        jobspec.setattr("system.dependencies", [uri_entry(u, "dependency") for u in args.dependency])
    if args.requires is not None:
        query = " ".join(args.requires)
        try:
            jobspec.setattr("system.constraints", SubmitConstraintParser().parse(query))
        except ConstraintSyntaxError as exc:
            raise ValueError(f"--requires='{query}': {exc}") from None
    if args.time_limit is not None:
        limit: Any = args.time_limit
        try:
            limit = float(limit) * 60  # a bare number means minutes
        except ValueError:
            pass
        try:
            jobspec.duration = limit
        except ValueError as exc:
            raise ValueError(f"--time-limit={args.time_limit}: {exc}") from None
    if args.job_name is not None:
        jobspec.setattr("system.job.name", args.job_name)
    if args.input is not None and not _is_idset(args.input):
        jobspec.stdin = args.input
    label = getattr(args, "label_io", False)
    if args.output is not None and args.output not in ("none", "kvs"):
        jobspec.stdout = args.output
        if label:
            jobspec.setattr_shell_option("output.stdout.label", True)
    if args.error is not None and args.error not in ("none", "kvs"):
        jobspec.stderr = args.error
        if label:
            jobspec.setattr_shell_option("output.stderr.label", True)
    if args.unbuffered:
        jobspec.unbuffered = True
    if args.setopt is not None:
        for keyval in args.setopt:
            key, val = parse_jobspec_keyval("--setopt", keyval)
            jobspec.setattr_shell_option(key, val)
    if getattr(args, "debug", False):
        jobspec.setattr_shell_option("stop-tasks-in-exec", 1)
    if args.queue is not None:
        jobspec.setattr("system.queue", args.queue)
    if getattr(args, "bank", None) is not None:
        jobspec.setattr("system.bank", args.bank)
    if args.setattr is not None:
        for keyval in args.setattr:
            key, val = parse_jobspec_keyval("--setattr", keyval)
            if not key.startswith((".", "user.", "system.")):
                key = "system." + key
            jobspec.setattr(key.lstrip("."), val)
    if args.add_file is not None:
        for arg in args.add_file:
            name, _, data = arg.partition("=")
            if not data:
                if "\n" in name:
                    raise ValueError("--add-file: file name missing")
                data, name = name, os.path.basename(name)
            try:
                jobspec.add_file(name, data)
            except (TypeError, ValueError, OSError) as exc:
                msg = getattr(exc, "strerror", None) or str(exc)
                raise ValueError(f"--add-file={arg}: {msg}") from None
    return jobspec


# ----------------------------------------------------------- bulksubmit


class Xcmd:
    """A job's command and options after ``{}`` substitution (bulksubmit, ``{cc}``).

    Options not listed in ``mutable_args`` come unchanged from the original args."""

    mutable_args = {
        "queue": "-q", "bank": "-B", "ntasks": "-n", "nodes": "-N", "cores_per_task": "-c",
        "gpus_per_task": "-g", "cores": "--cores=", "tasks_per_node": "--tasks-per-node=",
        "tasks_per_core": "--tasks-per-core=", "gpus_per_node": "--gpus-per-node=",
        "time_limit": "-t", "env": "--env=", "urgency": "--urgency=", "setopt": "-o ",
        "setattr": "--setattr=", "job_name": "--job-name=", "input": "--input=",
        "output": "--output=", "error": "--error=", "cc": "--cc=", "bcc": "--bcc=",
        "log": "--log=", "log_stderr": "--log-stderr=", "dependency": "--dependency=",
        "taskmap": "--taskmap=", "requires": "--requires=", "wait": "--wait-event=",
        "cwd": "--cwd=",
    }

    class Xinput:
        """An input string with the bulksubmit attributes ``{0.%}`` (no extension),
        ``{0./}`` (basename), ``{0.//}`` (dirname), ``{0./%}`` and ``--define`` methods."""

        def __init__(self, arg: str, methods: dict):
            self.string = arg
            self.methods = methods

        def __str__(self) -> str:
            return self.string

        def __format__(self, spec: str) -> str:
            return format(self.string, spec)

        def __getattr__(self, attr: str) -> Any:
            if attr in ("string", "methods"):
                raise AttributeError(attr)
            s = self.string
            if attr == "%":
                return os.path.splitext(s)[0]
            if attr == "/":
                return os.path.basename(s)
            if attr == "//":
                return os.path.dirname(s)
            if attr == "/%":
                return os.path.basename(os.path.splitext(s)[0])
            if attr in self.methods:
                result = eval(self.methods[attr], {}, {"x": s})  # noqa: S307 - user's --define
                if isinstance(result, list):
                    return "::list::".join(str(x) for x in result)
                return result
            raise ValueError(f"Unknown input string method '.{attr}'")

    @staticmethod
    def _subst(val: Any, inputs: list, kwargs: dict, what: str) -> Any:
        def one(s: str) -> str:
            s = s.replace("{{", "=stache=").replace("}}", "=/stache=")
            try:
                s = s.format(*inputs, **kwargs)
            except IndexError:
                raise ValueError(f"Invalid replacement index in {what}'{val}'") from None
            except KeyError as exc:
                raise ValueError(f"Replacement key {exc} not found in '{what}{val}'") from None
            return s.replace("=stache=", "{{").replace("=/stache=", "}}")

        if isinstance(val, str):
            return one(val)
        if isinstance(val, list):
            return [one(x) if isinstance(x, str) else x for x in val]
        return val

    def __init__(self, args: Any, inputs: list | None = None, **kwargs: Any):
        self._orig_args = args
        methods = getattr(args, "methods", None) or {}
        xin = [self.Xinput(x, methods) for x in (inputs or [])]
        self.command = []
        for arg in args.command:
            out = self._subst(arg, xin, kwargs, "command ")
            self.command.extend(out.split("::list::"))
        self.modified = {}
        for attr, opt in self.mutable_args.items():
            val = getattr(args, attr, None)
            if val is None:
                continue
            new = self._subst(val, xin, kwargs, opt)
            setattr(self, attr, new)
            if new != val or attr == "cc":
                self.modified[attr] = True

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_orig_args":
            raise AttributeError(attr)
        return getattr(self._orig_args, attr)

    def __str__(self) -> str:
        out = [f"{opt}{getattr(self, a)}" for a, opt in self.mutable_args.items()
               if a in self.modified and getattr(self, a)]
        return " ".join(out + list(self.command))


def needs_substitution(args: Any) -> bool:
    """True if ``{cc}`` (or any ``{...}``) appears in the command or a mutable option."""
    vals: list = list(args.command)
    for attr in Xcmd.mutable_args:
        v = getattr(args, attr, None)
        if isinstance(v, str):
            vals.append(v)
        elif isinstance(v, list):
            vals.extend(x for x in v if isinstance(x, str))
    return any("{" in v.replace("{{", "").replace("}}", "") for v in vals)


# ------------------------------------------------------------------ output


class ProgressBar:
    """A one-line progress display on a terminal: ``before [====   ] after``."""

    def __init__(self, total: int, before: str = "", after: str = "", width: int = 40,
                 stream: Any = None):
        import time

        self.total = max(total, 1)
        self.count = 0
        self.before, self.after, self.width = before, after, width
        self.stream = stream or sys.stdout
        self.t0 = time.monotonic()
        self.fields: dict = {}
        self._time = time.monotonic

    @property
    def elapsed(self) -> float:
        return max(self._time() - self.t0, 1e-9)

    def update(self, advance: int = 1, **fields: Any) -> None:
        self.count += advance
        self.fields.update(fields)
        self.redraw()

    def redraw(self) -> None:
        pct = 100.0 * self.count / self.total
        filled = int(self.width * self.count / self.total)
        el = self.elapsed
        fields = dict(self.fields, total=self.total, count=self.count, percent=pct,
                      elapsed=el, jps=self.count / el)
        bar = "=" * filled + " " * (self.width - filled)
        text = f"\r{self.before.format(**fields)}[{bar}] {self.after.format(**fields)}"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        self.redraw()
        self.stream.write("\n")
        self.stream.flush()
