"""Jobspec for the SDK (RFC 14 canonical, RFC 25 V1): :class:`Jobspec`, :class:`JobspecV1`,
:func:`validate_jobspec`, with flux-core's names, arguments and defaults.

A ``Jobspec`` wraps the jobspec dict (``jobspec.jobspec``, the JSON wire form), so code
written against flux-core's bindings that reads or edits that dict keeps working.  The
constructors validate (see :mod:`flux.core.job.jobspec` for the rules) and raise
:class:`JobspecError`, which is both a ``ValueError`` and a ``TypeError``.  For typed access
use :meth:`Jobspec.model`, an attrs :class:`~flux.core.job.jobspec.JobspecModel`.

Fast paths: :meth:`Jobspec.from_dict` (no parsing) and :meth:`Jobspec.to_dict`; YAML is only
imported when a document that is not JSON has to be read.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import stat
import sys
from collections.abc import Iterator, Mapping

from flux.core.job.jobspec import (
    TOP_LEVEL_KEYS,
    V1_RESOURCE_TYPES,
    JobspecError,
    SlotCounts,
    resource_counts,
    resource_walk,
    slot_counts,
    structure,
    unstructure,
    validate,
)
from flux.core.util.fsd import parse_fsd

TYPE_CHECKING = False  # not from typing: importing typing costs each command ~2 ms
if TYPE_CHECKING:
    import datetime
    from typing import Any

    from flux.core.job.jobspec_model import JobspecModel

__all__ = [
    "Jobspec",
    "JobspecError",
    "JobspecV1",
    "V1_RESOURCE_TYPES",
    "fileref",
    "validate_jobspec",
]


# ------------------------------------------------------------------ helpers


def _attr_key(key: str) -> str:
    """flux-core's key rules: ``attributes.*`` as is; ``system.*``/``user.*`` under
    ``attributes``; a leading ``.`` is relative to ``attributes``; anything else goes
    under ``attributes.system``."""
    if key.startswith("attributes."):
        return key
    if key.startswith("."):
        return "attributes" + key
    if not key.startswith(("user.", "system.")):
        key = "system." + key
    return "attributes." + key


def fileref(data: Mapping | str, perms: int = 0o600, encoding: str | None = None) -> dict:
    """An RFC 37 file entry.  ``data`` is a dict (stored as JSON content), content already
    in ``encoding`` (``utf-8`` or ``base64``), or else the path of a local file to embed
    (utf-8 if it decodes as such, otherwise base64; its size and mode are recorded)."""
    ref: dict[str, Any] = {"mode": perms | stat.S_IFREG}
    if isinstance(data, Mapping):
        ref["data"] = dict(data)
    elif encoding is not None:
        if encoding not in ("base64", "utf-8"):
            raise ValueError(f"invalid file encoding '{encoding}' (utf-8 or base64)")
        ref["data"] = data
        ref["encoding"] = encoding
    else:
        st = os.stat(data)
        ref["size"] = st.st_size
        ref["mode"] = st.st_mode
        with open(data, "rb") as fp:
            raw = fp.read()
        try:
            ref["data"] = raw.decode("utf-8")
            ref["encoding"] = "utf-8"
        except UnicodeDecodeError:
            ref["data"] = base64.b64encode(raw).decode("ascii")
            ref["encoding"] = "base64"
    return ref


def _load_text(text: str | bytes) -> Any:
    """JSON (fast) or YAML text to Python objects; JobspecError if neither parses."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JobspecError(f"jobspec is not valid UTF-8: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        import orjson  # imported on use: it costs ~20 ms, too much for a short CLI command

        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass  # YAML flow style, or broken: let YAML say what is wrong
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JobspecError(f"invalid jobspec YAML/JSON: {exc}") from None


def _is_timedelta(value: Any) -> bool:
    # datetime is not imported up front (~4 ms of CLI start-up): a timedelta can only
    # exist if the caller already imported it
    dt = sys.modules.get("datetime")
    return dt is not None and isinstance(value, dt.timedelta)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# ----------------------------------------------------------------- Jobspec


class Jobspec:
    """A canonical (RFC 14) jobspec: any resource types and count ranges.

    ``Jobspec(resources, tasks, attributes, version)`` validates and raises
    :class:`JobspecError`; ``Jobspec(**obj)`` works for a decoded dict.
    """

    top_level_keys = set(TOP_LEVEL_KEYS)
    _v1 = False

    def __init__(self, resources: list, tasks: list, attributes: Mapping, version: int):
        js = {"resources": resources, "tasks": tasks, "attributes": attributes, "version": version}
        validate(js, v1=self._v1)
        self.jobspec: dict = js

    # ------------------------------------------------------- constructors

    @classmethod
    def from_dict(cls, jobspec: Mapping, validate_first: bool = True) -> Jobspec:
        """Wrap a decoded jobspec dict (not copied) after validating it."""
        if validate_first:
            validate(jobspec, v1=cls._v1)
        self = cls.__new__(cls)
        self.jobspec = jobspec if isinstance(jobspec, dict) else dict(jobspec)
        return self

    @classmethod
    def loads(cls, text: str | bytes) -> Jobspec:
        """From JSON or YAML text."""
        return cls.from_dict(_load_text(text))

    @classmethod
    def from_yaml_stream(cls, yaml_stream: Any) -> Jobspec:
        """From a YAML (or JSON) document: a file-like object, a string or bytes."""
        text = yaml_stream.read() if hasattr(yaml_stream, "read") else yaml_stream
        return cls.loads(text)

    @classmethod
    def from_yaml_file(cls, filename: str | os.PathLike) -> Jobspec:
        """From a YAML (or JSON) file."""
        with open(filename, "rb") as infile:
            return cls.loads(infile.read())

    @classmethod
    def from_model(cls, model: JobspecModel) -> Jobspec:
        return cls.from_dict(unstructure(model))

    def to_dict(self) -> dict:
        """The jobspec dict itself (live: edits change this jobspec)."""
        return self.jobspec

    def model(self) -> JobspecModel:
        """A typed copy of this jobspec (attrs classes)."""
        return structure(self.jobspec)

    def validate(self) -> None:
        """Validate again (after edits through :meth:`setattr` or the dict)."""
        validate(self.jobspec, v1=self._v1)

    def dumps(self, **kwargs: Any) -> str:
        """Compact JSON (non-ASCII kept).  Keyword arguments go to ``json.dumps``."""
        if not kwargs:
            import orjson

            try:
                return orjson.dumps(self.jobspec, default=_json_default).decode("utf-8")
            except TypeError:
                pass  # e.g. an int beyond 64 bits, or a non-string key: let json decide
            return json.dumps(self.jobspec, ensure_ascii=False, separators=(",", ":"),
                              default=_json_default)
        kwargs.setdefault("ensure_ascii", False)
        return json.dumps(self.jobspec, **kwargs)

    # ---------------------------------------------------------- sections

    @property
    def resources(self) -> list:
        return self.jobspec.get("resources")

    @property
    def tasks(self) -> list:
        return self.jobspec.get("tasks")

    @property
    def attributes(self) -> dict:
        return self.jobspec.get("attributes")

    @property
    def version(self) -> int:
        return self.jobspec.get("version")

    # ---------------------------------------------------------- attributes

    def getattr(self, key: str) -> Any:
        """An attribute by dotted key (``duration``, ``system.duration``, ``user.x``,
        ``attributes.system.duration``).  KeyError if absent (or null)."""
        full = _attr_key(key)
        value: Any = self.jobspec
        for part in full.split("."):
            if not isinstance(value, Mapping):
                raise KeyError(key)
            value = value.get(part)
            if value is None:
                raise KeyError(key)
        return value

    def setattr(self, key: str, val: Any) -> None:
        """Set an attribute by dotted key, creating levels on demand (same key rules as
        :meth:`getattr`)."""
        full = _attr_key(key)
        parts = full.split(".")
        d: Any = self.jobspec
        for part in parts[:-1]:
            nxt = d.get(part)
            if nxt is None:
                nxt = d[part] = {}
            elif not isinstance(nxt, dict):
                raise TypeError(f"failed to set {full} to {val!r}: '{part}' is not a dictionary")
            d = nxt
        d[parts[-1]] = val

    def setattr_shell_option(self, key: str, val: Any) -> None:
        """Set ``attributes.system.shell.options.<key>``."""
        self.setattr("system.shell.options." + key, val)

    def getattr_shell_option(self, key: str, default: Any = None) -> Any:
        try:
            return self.getattr("system.shell.options." + key)
        except KeyError:
            return default

    def _system(self) -> dict:
        return self.jobspec.setdefault("attributes", {}).setdefault("system", {})

    @property
    def duration(self) -> float | None:
        """Time limit in seconds (0: unlimited).  Set it from a number of seconds, an FSD
        string (``"30s"``, ``"2h"``) or a ``datetime.timedelta``."""
        try:
            return self.jobspec["attributes"]["system"]["duration"]
        except (KeyError, TypeError):
            return None

    @duration.setter
    def duration(self, duration: float | str | datetime.timedelta) -> None:
        if isinstance(duration, str):
            time = parse_fsd(duration)
        elif _is_timedelta(duration):
            time = duration.total_seconds()
        elif isinstance(duration, (int, float)) and not isinstance(duration, bool):
            time = float(duration)
        else:
            raise TypeError("duration must be an int, float, string, or timedelta,"
                            f" not {type(duration).__name__}")
        if time < 0:
            raise ValueError(f"duration must not be negative, got {duration!r}")
        if math.isnan(time) or math.isinf(time):
            raise ValueError(f"duration must be a normal, finite value, got {duration!r}")
        self.setattr("system.duration", time)

    @property
    def queue(self) -> str | None:
        try:
            return self.jobspec["attributes"]["system"]["queue"]
        except (KeyError, TypeError):
            return None

    @queue.setter
    def queue(self, queue: str) -> None:
        if not isinstance(queue, str):
            raise TypeError(f"queue must be a string, not {type(queue).__name__}")
        self.setattr("system.queue", queue)

    @property
    def cwd(self) -> str | None:
        try:
            return self.jobspec["attributes"]["system"]["cwd"]
        except (KeyError, TypeError):
            return None

    @cwd.setter
    def cwd(self, cwd: str | os.PathLike) -> None:
        if isinstance(cwd, os.PathLike):
            cwd = os.fspath(cwd)
        if not isinstance(cwd, str):
            raise ValueError(f"cwd must be a string or path, not {type(cwd).__name__}")
        self.setattr("system.cwd", cwd)

    @property
    def environment(self) -> dict | None:
        try:
            return self.jobspec["attributes"]["system"]["environment"]
        except (KeyError, TypeError):
            return None

    @environment.setter
    def environment(self, environ: Mapping) -> None:
        """Set the whole environment (assigned as is, not copied)."""
        if not isinstance(environ, Mapping):
            raise ValueError(f"environment must be a mapping, not {type(environ).__name__}")
        self.setattr("system.environment", environ)

    def _get_io_path(self, iotype: str, stream: str) -> str | None:
        try:
            return self.jobspec["attributes"]["system"]["shell"]["options"][iotype][stream]["path"]
        except (KeyError, TypeError):
            return None

    def _set_io_path(self, iotype: str, stream: str, path: str | os.PathLike) -> None:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"The path must be a string or pathlib object, got {type(path).__name__}")
        self.setattr_shell_option(f"{iotype}.{stream}.type", "file")
        self.setattr_shell_option(f"{iotype}.{stream}.path", path)

    @property
    def input(self) -> str | None:
        """File for the tasks' stdin (``shell.options.input.stdin``)."""
        return self._get_io_path("input", "stdin")

    @input.setter
    def input(self, path: str | os.PathLike) -> None:
        self._set_io_path("input", "stdin", path)

    @property
    def output(self) -> str | None:
        """File for the tasks' stdout (``shell.options.output.stdout``)."""
        return self._get_io_path("output", "stdout")

    @output.setter
    def output(self, path: str | os.PathLike) -> None:
        self._set_io_path("output", "stdout", path)

    @property
    def error(self) -> str | None:
        """File for the tasks' stderr (``shell.options.output.stderr``)."""
        return self._get_io_path("output", "stderr")

    @error.setter
    def error(self, path: str | os.PathLike) -> None:
        self._set_io_path("output", "stderr", path)

    stdin = input
    stdout = output
    stderr = error

    @property
    def unbuffered(self) -> bool:
        """True if stdout and stderr are unbuffered."""
        return (self.getattr_shell_option("output.stdout.buffer.type") == "none"
                and self.getattr_shell_option("output.stderr.buffer.type") == "none")

    @unbuffered.setter
    def unbuffered(self, value: bool) -> None:
        """True: no buffering on stdout/stderr, 50 ms output batches, no input batching.
        False: remove those settings again."""
        if not isinstance(value, bool):
            raise TypeError("unbuffered must be True or False")
        if value:
            self.setattr_shell_option("output.stdout.buffer.type", "none")
            self.setattr_shell_option("output.stderr.buffer.type", "none")
            self.setattr_shell_option("output.batch-timeout", 0.05)
            self.setattr_shell_option("input.batch-timeout", 0.0)
            return
        try:
            options = self.jobspec["attributes"]["system"]["shell"]["options"]
        except (KeyError, TypeError):
            return
        output = options.get("output")
        if isinstance(output, dict):
            for stream in ("stdout", "stderr"):
                s = output.get(stream)
                if isinstance(s, dict):
                    s.pop("buffer", None)
                    if not s:
                        del output[stream]
            if output.get("batch-timeout") == 0.05:
                del output["batch-timeout"]
            if not output:
                del options["output"]
        inp = options.get("input")
        if isinstance(inp, dict):
            if inp.get("batch-timeout") == 0.0:
                del inp["batch-timeout"]
            if not inp:
                del options["input"]

    def add_file(self, path: str, data: Mapping | str, perms: int | None = None,
                 encoding: str | None = None) -> None:
        """Add a file to ``attributes.system.files`` (RFC 37), unpacked into the job's
        ``{{tmpdir}}``.  ``data`` containing a newline (or with an ``encoding``) is the
        content; a dict is JSON content; anything else is a local file to read."""
        if not isinstance(data, (Mapping, str)):
            raise TypeError("data must be a Mapping or string")
        if perms is None:
            perms = 0o600
        if encoding is None and isinstance(data, str) and "\n" in data:
            encoding = "utf-8"
        system = self._system()
        files = system.get("files") or {}
        files[path] = fileref(data, perms=perms, encoding=encoding)
        system["files"] = files

    # ----------------------------------------------------------- resources

    def __iter__(self) -> Iterator[dict]:
        """Resource vertices, depth-first pre-order."""
        for _, r, _ in resource_walk(self.resources):
            yield r

    def resource_walk(self) -> Iterator[tuple[dict | None, dict, int]]:
        """``(parent, vertex, total count)`` depth-first; counts multiply down the tree."""
        return resource_walk(self.resources)

    def resource_counts(self) -> dict[str, int]:
        """Total of each resource type (a defaultdict: absent types count 0), e.g.
        ``{"node": 2, "slot": 4, "core": 8}``."""
        return resource_counts(self.resources)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.resources!r}, {self.tasks!r}, "
                f"attributes={self.attributes!r}, version={self.version!r})")

    def __str__(self) -> str:
        return str(self.jobspec)


# --------------------------------------------------------------- JobspecV1


class JobspecV1(Jobspec):
    """A V1 jobspec (RFC 25): node/slot/core/gpu in the shapes ``slot>core``,
    ``slot>(core,gpu)``, ``node>slot>core``, ``node>slot>(core,gpu)``; one task;
    ``attributes.system.duration`` required."""

    _v1 = True

    def __init__(self, resources: list, tasks: list, attributes: Mapping, version: int = 1):
        super().__init__(resources, tasks, attributes, version)

    def counts(self) -> SlotCounts:
        """nnodes, nslots (total), slot_size, slot_gpus, exclusive, duration, ntasks
        (and the derived ncores, ngpus)."""
        return slot_counts(self.jobspec)

    # ------------------------------------------------------------ builders

    @staticmethod
    def _create_resource(res_type: str, count: int, with_child: list | None = None,
                         exclusive: bool = False) -> dict:
        if with_child is not None and (isinstance(with_child, str)
                                       or not isinstance(with_child, (list, tuple))):
            raise TypeError("child resource must be None or a sequence")
        if not count > 0:
            raise ValueError("resource count must be > 0")
        res: dict[str, Any] = {"type": res_type, "count": count}
        if exclusive:
            res["exclusive"] = True
        if with_child:
            res["with"] = list(with_child)
        return res

    @classmethod
    def _create_slot(cls, label: str, count: int, with_child: list) -> dict:
        slot = cls._create_resource("slot", count, with_child)
        slot["label"] = label
        return slot

    @staticmethod
    def _command(command: Any) -> list[str]:
        if isinstance(command, (str, bytes)) or not hasattr(command, "__iter__"):
            raise TypeError("command must be a list of strings")
        return list(command)

    def _set_extra_options(self, duration=None, environment=None, env_expand=None, cwd=None,
                           rlimits=None, name=None, input=None, output=None, error=None,
                           label_io=False, unbuffered=False, queue=None, bank=None) -> JobspecV1:
        if duration is not None:
            self.duration = duration
        if environment is not None:
            self.environment = environment
        else:
            self.environment = dict(os.environ)
        if env_expand is not None:
            if not isinstance(env_expand, Mapping):
                raise ValueError("env_expand must be a mapping")
            self.setattr_shell_option("env-expand", env_expand)
        if cwd is not None:
            self.cwd = cwd
        if rlimits is not None:
            if not isinstance(rlimits, Mapping):
                raise ValueError("rlimits must be a mapping")
            self.setattr_shell_option("rlimit", rlimits)
        if name is not None:
            self.setattr("job.name", name)
        if input is not None:
            self.input = input
        if output is not None and output not in ("none", "kvs"):
            self.output = output
            if label_io:
                self.setattr_shell_option("output.stdout.label", True)
        if error is not None and error not in ("none", "kvs"):
            self.error = error
            if label_io:
                self.setattr_shell_option("output.stderr.label", True)
        if unbuffered:
            self.unbuffered = True
        if queue is not None:
            self.setattr("queue", queue)
        if bank is not None:
            self.setattr("bank", bank)
        return self

    @classmethod
    def from_command(cls, command, num_tasks=1, cores_per_task=1, gpus_per_task=None,
                     num_nodes=None, exclusive=False, duration=None, environment=None,
                     env_expand=None, cwd=None, rlimits=None, name=None, input=None,
                     output=None, error=None, label_io=False, unbuffered=False, queue=None,
                     bank=None) -> JobspecV1:
        """The per-task request of ``flux submit/run`` (SPEC 2.5):

        - ``num_tasks`` slots of ``cores_per_task`` cores (and ``gpus_per_task`` GPUs),
          one task per slot;
        - with ``num_nodes`` M: ``node M > slot ceil(N/M) > core``, and tasks
          ``{total: N}`` when N is not a multiple of M; ``exclusive`` marks the nodes.

        ``environment`` defaults to a copy of ``os.environ``; ``duration`` takes seconds,
        an FSD string or a timedelta; the rest set the matching attributes and shell
        options.  Raises ValueError for impossible combinations (``num_nodes`` greater
        than ``num_tasks``, ``exclusive`` without ``num_nodes``, counts below 1).
        """
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError("task count must be a integer >= 1")
        if isinstance(cores_per_task, bool) or not isinstance(cores_per_task, int) or cores_per_task < 1:
            raise ValueError("cores per task must be an integer >= 1")
        if gpus_per_task is not None:
            if isinstance(gpus_per_task, bool) or not isinstance(gpus_per_task, int) or gpus_per_task < 0:
                raise ValueError("gpus per task must be an integer >= 0")
        if num_nodes is not None:
            if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
                raise ValueError("node count must be an integer >= 1 (if set)")
            if num_nodes > num_tasks:
                raise ValueError("node count must not be greater than task count")
        elif exclusive:
            raise ValueError("exclusive can only be set with a node count")
        children = [cls._create_resource("core", cores_per_task)]
        if gpus_per_task not in (None, 0):
            children.append(cls._create_resource("gpu", gpus_per_task))
        if num_nodes is not None:
            num_slots = -(-num_tasks // num_nodes)
            if num_tasks % num_nodes != 0:
                task_count: dict[str, int] = {"total": num_tasks}
            else:
                task_count = {"per_slot": 1}
            slot = cls._create_slot("task", num_slots, children)
            top = cls._create_resource("node", num_nodes, [slot], exclusive)
        else:
            task_count = {"per_slot": 1}
            top = cls._create_slot("task", num_tasks, children)
        tasks = [{"command": cls._command(command), "slot": "task", "count": task_count}]
        attributes = {"system": {"duration": 0}}
        return cls([top], tasks, attributes=attributes)._set_extra_options(
            duration=duration, environment=environment, env_expand=env_expand, cwd=cwd,
            rlimits=rlimits, name=name, input=input, output=output, error=error,
            label_io=label_io, unbuffered=unbuffered, queue=queue, bank=bank)

    @classmethod
    def per_resource(cls, command, ncores=None, nnodes=None, per_resource_type=None,
                     per_resource_count=None, gpus_per_node=None, exclusive=False,
                     **kwargs) -> JobspecV1:
        """The per-resource request of ``flux submit --cores/--tasks-per-node/
        --tasks-per-core/--gpus-per-node`` (SPEC 2.5).  Tasks are always ``per_slot: 1``;
        ``shell.options.per-resource = {type, count}`` tells the shell how many to start.
        ``**kwargs`` are :meth:`from_command`'s extra options."""
        per_resource = None
        if per_resource_type is not None and per_resource_count is not None:
            if per_resource_type not in ("node", "core"):
                raise ValueError(f"Invalid per_resource_type='{per_resource_type}' specified")
            if isinstance(per_resource_count, bool) or not isinstance(per_resource_count, int):
                raise ValueError("per_resource_count must be an integer")
            if per_resource_count < 1:
                raise ValueError("per_resource_count must be >= 1")
            per_resource = {"type": per_resource_type, "count": per_resource_count}
        elif per_resource_type is not None:
            raise ValueError("must specify a per_resource_count with per_resource_type")
        elif per_resource_count is not None:
            raise ValueError("must specify a per_resource_type with per_resource_count")
        if ncores is not None and (not isinstance(ncores, int) or ncores < 1):
            raise ValueError("ncores must be an integer >= 1")
        if gpus_per_node is not None:
            if not isinstance(gpus_per_node, int) or gpus_per_node < 0:
                raise ValueError("gpus_per_node must be an integer >= 0")
            if not nnodes:
                raise ValueError("gpus_per_node must be specified with nnodes")
        if nnodes is not None:
            if not isinstance(nnodes, int) or nnodes < 1:
                raise ValueError("nnodes must be an integer >= 1")
        elif exclusive:
            raise ValueError("exclusive can only be set with a node count")
        if nnodes and ncores:
            if ncores < nnodes:
                raise ValueError("number of cores cannot be less than nnodes")
            if ncores % nnodes != 0:
                raise ValueError("number of cores must be evenly divisible by node count")
            nslots, slot_size = 1, ncores // nnodes
        elif ncores:
            nslots, slot_size = ncores, 1
        elif nnodes:
            if not exclusive:
                raise ValueError("Specifying nnodes also requires ncores or exclusive")
            nslots, slot_size = 1, 1
        else:
            raise ValueError("must specify node or core count with per_resource")
        children = [cls._create_resource("core", slot_size)]
        if gpus_per_node:
            children.append(cls._create_resource("gpu", gpus_per_node))
        slot = cls._create_slot("task", nslots, children)
        top = cls._create_resource("node", nnodes, [slot], exclusive) if nnodes else slot
        tasks = [{"command": cls._command(command), "slot": "task", "count": {"per_slot": 1}}]
        attributes: dict[str, Any] = {"system": {"duration": 0}}
        if per_resource:
            attributes["system"]["shell"] = {"options": {"per-resource": per_resource}}
        return cls([top], tasks, attributes=attributes)._set_extra_options(**kwargs)

    @classmethod
    def from_batch_command(cls, script, jobname, args=None, num_slots=1, cores_per_slot=1,
                           gpus_per_slot=None, num_nodes=None, broker_opts=None,
                           exclusive=False, conf=None, **kwargs) -> JobspecV1:
        """A nested instance that runs ``script`` (text starting with ``#!``), stored in
        the jobspec as ``files.script`` (mode 0700) and run as ``{{tmpdir}}/script args``.
        The job is named ``jobname``.  Other arguments as :meth:`from_nest_command`."""
        if not isinstance(script, str) or not script.startswith("#!"):
            raise ValueError(f"{jobname} does not appear to start with '#!'")
        args = () if args is None else args
        jobspec = cls.from_nest_command(
            command=["{{tmpdir}}/script", *args], num_slots=num_slots,
            cores_per_slot=cores_per_slot, gpus_per_slot=gpus_per_slot, num_nodes=num_nodes,
            broker_opts=broker_opts, exclusive=exclusive, conf=conf, name=jobname, **kwargs)
        jobspec.add_file("script", script, perms=0o700, encoding="utf-8")
        return jobspec

    @classmethod
    def from_nest_command(cls, command, num_slots=1, cores_per_slot=1, gpus_per_slot=None,
                          num_nodes=None, broker_opts=None, exclusive=False, conf=None,
                          **kwargs) -> JobspecV1:
        """A nested Flux instance: ``["flux", "broker", *broker_opts, *command]`` with one
        broker per node (``shell.options.per-resource.type = "node"``), ``mpi = "none"``
        and ``exit-timeout = "none"``.  ``conf`` (a dict) becomes ``files["conf.json"]``
        and the broker option ``-c{{tmpdir}}/conf.json``.  Slots are sized by
        ``num_slots``/``cores_per_slot``/``gpus_per_slot``/``num_nodes``/``exclusive``."""
        broker_opts = list(broker_opts) if broker_opts is not None else []
        if conf is not None:
            broker_opts.append("-c{{tmpdir}}/conf.json")
        jobspec = cls.from_command(
            command=["flux", "broker", *broker_opts, *cls._command(command)],
            num_tasks=num_slots, cores_per_task=cores_per_slot, gpus_per_task=gpus_per_slot,
            num_nodes=num_nodes, exclusive=exclusive, **kwargs)
        jobspec.setattr_shell_option("per-resource.type", "node")
        jobspec.setattr_shell_option("mpi", "none")
        jobspec.setattr_shell_option("exit-timeout", "none")
        if conf is not None:
            jobspec.add_file("conf.json", conf)
        return jobspec


# --------------------------------------------------------------- validation


def validate_jobspec(jobspec: Jobspec | str | bytes | Mapping,
                     require_version: int | None = None) -> tuple[bool, Jobspec]:
    """Validate a jobspec given as a ``Jobspec``, JSON text, or a decoded dict.

    V1 rules apply when ``require_version == 1`` or the document says ``version: 1``;
    canonical rules otherwise.  Returns ``(True, jobspec_object)``; raises
    :class:`JobspecError` (ValueError and TypeError) naming the problem, or OSError
    (EINVAL) for ``None``.
    """
    if jobspec is None:
        raise OSError(errno.EINVAL, "jobspec must not be None/NULL")
    if isinstance(jobspec, Jobspec):
        obj: Any = jobspec.jobspec
    elif isinstance(jobspec, (str, bytes, bytearray)):
        import orjson

        try:
            obj = orjson.loads(jobspec)
        except orjson.JSONDecodeError as exc:
            raise JobspecError(f"invalid jobspec JSON: {exc}") from None
    elif isinstance(jobspec, Mapping):
        obj = jobspec
    else:
        raise TypeError("jobspec must be a Jobspec or string (either binary or unicode)")
    if not isinstance(obj, Mapping):
        raise JobspecError(f"jobspec must be a JSON object, not {type(obj).__name__}")
    if require_version == 1 or obj.get("version", 0) == 1:
        return True, JobspecV1.from_dict(obj)
    return True, Jobspec.from_dict(obj)
