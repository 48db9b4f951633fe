"""`flux.job.info`: `JobInfo`, one job of a `job-list` answer with the derived fields
`flux jobs` shows (status, runtime, contextual info...), and `JobInfoFormat`, the
`flux jobs` output format (field names and column headings).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import string
import sys
import time
from datetime import datetime
from functools import cached_property
from itertools import chain
from typing import Any

from flux.core.job import states as S
from flux.job.JobID import JobID
from flux.util.format import OutputFormat, fsd

__all__ = [
    "AnnotationsInfo", "DependencyList", "EmptyObject", "ExceptionInfo", "InfoList",
    "InstanceInfo", "JobInfo", "JobInfoFormat", "StatsInfo", "get_username",
    "job_fields_to_attrs", "resulttostr", "statetostr", "statustostr",
]

_STATE_EMOJI = {"N": "\U0001F381", "D": "\U0001F6D1", "P": "\U0001F6A6", "S": "\U0001F4C5",
                "R": "\U0001F3C3", "C": "\U0001F5D1", "I": "\U0001F480"}
_RESULT_EMOJI = {"CD": ("\U0001F600", ":-)"), "F": ("\U0001F4A9", ":'-("),
                 "CA": ("\U0001F4A5", "%-|"), "TO": ("\u231B", "(-_-)")}


def statetostr(stateid: Any, fmt: str = "L") -> str:
    """State number to name: fmt `L` RUN, `l` run, `S` R, `s` r (flux_job_statetostr)."""
    if isinstance(fmt, bool):  # the old singlechar argument
        fmt = "S" if fmt else "L"
    try:
        return S.statetostr(int(stateid), fmt)
    except (TypeError, ValueError):
        return ""


def resulttostr(resultid: Any, fmt: str = "L") -> str:
    """Result number to name (COMPLETED/CD, ...); "" when there is no result yet."""
    if resultid == "" or resultid is None:
        return ""
    if isinstance(fmt, bool):
        fmt = "S" if fmt else "L"
    try:
        return S.resulttostr(int(resultid), fmt)
    except (TypeError, ValueError):
        return ""


def statustostr(stateid: Any, resultid: Any, fmt: str = "L") -> str:
    """The state while the job is pending or running, its result once inactive."""
    try:
        active = int(stateid) & (S.PENDING | S.RUNNING)
    except (TypeError, ValueError):
        return ""
    return statetostr(stateid, fmt) if active else resulttostr(resultid, fmt)


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "utf-8")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def statetoemoji(stateid: Any) -> str:
    short = statetostr(stateid, "S")
    emoji = _STATE_EMOJI.get(short, short)
    return emoji if _can_print(emoji) else short


def resulttoemoji(resultid: Any) -> str:
    emoji, alt = _RESULT_EMOJI.get(resulttostr(resultid, "S"), ("\u3000", ""))
    return emoji if _can_print(emoji) else alt


def statustoemoji(stateid: Any, resultid: Any) -> str:
    try:
        active = int(stateid) & (S.PENDING | S.RUNNING)
    except (TypeError, ValueError):
        return ""
    return statetoemoji(stateid) if active else resulttoemoji(resultid)


_USERNAMES: dict[int, str] = {}


def get_username(userid: Any) -> str:
    """User name of a uid (the uid as a string if unknown); cached."""
    name = _USERNAMES.get(userid)
    if name is None:
        try:
            name = pwd.getpwuid(int(userid)).pw_name
        except (KeyError, TypeError, ValueError, OverflowError):
            name = str(userid)
        _USERNAMES[userid] = name
    return name


class ExceptionInfo:
    """The job's exception: occurred, severity, type, note ("" when unknown)."""

    def __init__(self, occurred: Any, severity: Any, _type: Any, note: Any):
        self.occurred, self.severity, self.type, self.note = occurred, severity, _type, note


class EmptyObject:
    """Stands in for a missing value: every attribute is empty, formats as ""."""

    def __getattr__(self, attr: str) -> EmptyObject:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return EmptyObject()

    def __repr__(self) -> str:
        return ""

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False

    def __format__(self, spec: str) -> str:
        return format("", spec.rstrip("bcdoxXeEfFgGn%"))


class AnnotationsInfo:
    """Annotations with attribute access (`annotations.sched.t_estimate`); missing keys
    give an EmptyObject, so a format field for an absent annotation prints empty."""

    def __init__(self, annotations_dict: dict | None):
        self.annotationsDict = annotations_dict or {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "annotationsDict":
            raise AttributeError(attr)
        if attr not in self.annotationsDict:
            return EmptyObject()
        v = self.annotationsDict[attr]
        return AnnotationsInfo(v) if isinstance(v, dict) else v

    def __repr__(self) -> str:
        return json.dumps(self.annotationsDict) if self.annotationsDict else ""

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.annotationsDict)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class InfoList(list):
    """A list that prints comma separated."""

    def __str__(self) -> str:
        return ",".join(str(x) for x in self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class DependencyList(InfoList):
    """Outstanding dependencies, with `begin-time=T` shown as `begin@HH:MM`."""

    def __init__(self, items: Any):
        out = []
        for dep in items or []:
            if isinstance(dep, str) and dep.startswith("begin-time="):
                try:
                    dt = datetime.fromtimestamp(float(dep.partition("=")[2])).astimezone()
                except ValueError:
                    out.append(dep)
                    continue
                if dt.date() == datetime.today().date():
                    dep = f"begin@{dt:%H:%M}"
                else:
                    dep = f"begin@{dt:%b%d-%H:%M}"
                if dt.second > 0:
                    dep += f":{dt:%S}"
            out.append(dep)
        super().__init__(out)


class _JobURI(str):
    """A child instance's URI with `.local` and `.remote` forms."""

    @property
    def remote(self) -> str:
        return str(self)

    @property
    def local(self) -> str:
        if self.startswith("ssh://"):
            rest = self[len("ssh://"):]
            path = rest[rest.find("/"):] if "/" in rest else ""
            return "local://" + path
        return str(self)


class StatsInfo:
    """Job statistics of a child instance (for `instance.stats`)."""

    def __init__(self, handle: Any = None):
        from flux.job.stats import JobStats

        self._stats = JobStats(handle) if handle is not None else None

    def update_sync(self) -> StatsInfo:
        if self._stats is not None:
            self._stats.update_sync()
        return self

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._stats, attr)

    def __repr__(self) -> str:
        s = self._stats
        return f"PD:{s.pending} R:{s.running} CD:{s.successful} F:{s.failed}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class InstanceInfo:
    """What a running child instance reports about itself (`instance.*` fields)."""

    def __init__(self, uri: str | None = None):
        self.initialized = False
        self.stats: Any = EmptyObject()
        self.resources: Any = EmptyObject()
        if not uri:
            return
        try:
            import flux
            from flux.core.resource.rv1 import ResourceSet

            h = flux.Flux(str(uri))
            self.stats = StatsInfo(h).update_sync()
            st = h.rpc("sched.resource-status").get()
            res = {k: ResourceSet.from_dict(st[k]) for k in ("all", "down", "allocated")}
            res["up"] = res["all"].subtract(res["down"])
            res["free"] = res["up"].subtract(res["allocated"])
            self.resources = _Resources(res)
            self.initialized = True
        except (OSError, ValueError, KeyError):
            self.stats = EmptyObject()
            self.resources = EmptyObject()

    @property
    def utilization(self) -> Any:
        if self.initialized and self.resources.all.ncores:
            return self.resources.allocated.ncores / self.resources.all.ncores
        return ""

    @property
    def gpu_utilization(self) -> Any:
        if self.initialized and self.resources.all.ngpus:
            return self.resources.allocated.ngpus / self.resources.all.ngpus
        return ""

    @property
    def progress(self) -> Any:
        if self.initialized and self.stats.total:
            return self.stats.inactive / self.stats.total
        return ""


class _Resources:
    def __init__(self, sets: dict):
        for k, v in sets.items():
            setattr(self, k, v)


class JobInfo:
    """One job from `job-list` with attribute access and derived fields.

    Raw attributes are available by name (`job.ntasks`, missing ones take the defaults
    below); `state` and `result` are names (the numbers are `state_id`/`result_id`);
    `exception` is an ExceptionInfo; `annotations` (and its `sched`/`user` parts) allow
    attribute access; derived fields are computed once, on first use.
    """

    defaults = {
        "t_depend": 0.0, "t_run": 0.0, "t_cleanup": 0.0, "t_inactive": 0.0, "duration": 0.0,
        "expiration": 0.0, "name": "", "cwd": "", "queue": "", "project": "", "bank": "",
        "ntasks": "", "ncores": "", "nnodes": "", "priority": "", "ranks": "", "nodelist": "",
        "success": "", "result": "", "waitstatus": "",
    }
    #: other properties included in to_dict()
    properties = ("id", "t_submit", "t_remaining", "state", "result", "username", "userid",
                  "urgency", "runtime", "status", "returncode", "dependencies")

    def __init__(self, info_resp: dict):
        d = dict(self.defaults)
        d.update(info_resp)
        d["id"] = JobID(d["id"])
        if "state" in d:
            d["state_id"] = d.pop("state")
        d["result_id"] = d.pop("result", "")
        d["exception"] = ExceptionInfo(d.get("exception_occurred", ""),
                                       d.get("exception_severity", ""),
                                       d.get("exception_type", ""),
                                       d.get("exception_note", ""))
        ann = AnnotationsInfo(d.get("annotations") or {})
        d["annotations"] = ann
        d["sched"] = ann.sched
        d["user"] = ann.user
        d["dependencies"] = DependencyList(d.get("dependencies", []))
        for key, value in d.items():
            self.__dict__["_" + key] = value

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        try:
            return self.__dict__["_" + attr]
        except KeyError:
            raise AttributeError(f"invalid JobInfo attribute '{attr}'") from None

    # ---------------------------------------------------------------- times
    def get_runtime(self) -> float:
        if self.t_cleanup > 0 and self.t_run > 0:
            return self.t_cleanup - self.t_run
        if self.t_run > 0:
            return time.time() - self.t_run
        return 0.0

    def get_remaining_time(self) -> float:
        try:
            if str(self.status) != "RUN":
                return 0.0
            left = self.expiration - time.time()
        except (AttributeError, TypeError):
            return 0.0
        return max(left, 0.0)

    @property
    def t_remaining(self) -> float:
        return self.get_remaining_time()

    @cached_property
    def runtime(self) -> float:
        return self.get_runtime()

    # -------------------------------------------------------- state, result
    @cached_property
    def state(self) -> str:
        return statetostr(self.__dict__.get("_state_id", ""))

    @cached_property
    def state_single(self) -> str:
        return statetostr(self.__dict__.get("_state_id", ""), "S")

    @cached_property
    def state_emoji(self) -> str:
        return statetoemoji(self.__dict__.get("_state_id", ""))

    @cached_property
    def result(self) -> str:
        return resulttostr(self.result_id)

    @cached_property
    def result_abbrev(self) -> str:
        return resulttostr(self.result_id, "S")

    @cached_property
    def result_emoji(self) -> str:
        return resulttoemoji(self.result_id)

    @cached_property
    def status(self) -> str:
        return statustostr(self.__dict__.get("_state_id", ""), self.result_id)

    @cached_property
    def status_abbrev(self) -> str:
        return statustostr(self.__dict__.get("_state_id", ""), self.result_id, "S")

    @cached_property
    def status_emoji(self) -> str:
        return statustoemoji(self.__dict__.get("_state_id", ""), self.result_id)

    @cached_property
    def username(self) -> str:
        return get_username(self.userid)

    @cached_property
    def returncode(self) -> Any:
        """The highest shell exit code, -signal if a shell was killed, -128 if the job
        was canceled before it ran, 1 if it failed before it ran; "" while active."""
        status = self.waitstatus
        if not isinstance(status, int) or isinstance(status, bool):
            if self.result_id == S.CANCELED:
                return -128
            if self.result_id in (S.FAILED, S.TIMEOUT):
                return 1
            return ""
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        return ""

    # ------------------------------------------------------------ contexts
    @cached_property
    def uri(self) -> _JobURI | None:
        uri = self.user.uri
        return _JobURI(uri) if isinstance(uri, str) and uri else None

    @cached_property
    def contextual_info(self) -> str:
        """PRIORITY: priority-wait; DEPEND: depends:LIST; SCHED: eta:T (or held /
        priority-hold); later: the nodelist."""
        state = str(self.state)
        if state == "PRIORITY":
            return "priority-wait"
        if state == "DEPEND":
            return f"depends:{self.dependencies}"
        if state == "SCHED":
            t_est = self.sched.t_estimate
            if isinstance(t_est, int | float) and not isinstance(t_est, bool):
                eta = t_est - time.time()
                return "eta:" + ("now" if eta < 0 else fsd(eta))
            if self.urgency == 0:
                return "held"
            if self.priority == 0:
                return "priority-hold"
            return ""
        return self.nodelist

    @cached_property
    def contextual_time(self) -> float:
        """The requested duration until the job runs, then its runtime."""
        if str(self.state) in ("PRIORITY", "DEPEND", "SCHED", "NEW"):
            return self.duration
        return self.runtime

    @cached_property
    def inactive_reason(self) -> str:
        """Why the job ended: Canceled[: note], Exception: type=T note=N, a signal name,
        Exit N, Timeout, ..."""
        if str(self.state) != "INACTIVE":
            return ""
        result = str(self.result)
        exc = self.exception
        if result == "CANCELED":
            if exc.occurred and exc.type == "cancel" and exc.note:
                return f"Canceled: {exc.note}"
            return "Canceled"
        if result == "FAILED":
            if exc.occurred and exc.type != "exec" and exc.severity == 0:
                note = f" note={exc.note}" if exc.note else ""
                return f"Exception: type={exc.type}{note}"
            rc = self.returncode
            if isinstance(rc, int) and rc > 128:
                try:
                    return signal.strsignal(rc - 128) or f"Signaled {rc - 128}"
                except ValueError:
                    return f"Signaled {rc - 128}"
            if rc == 126:
                return "Command invoked cannot execute"
            if rc == 127:
                return "command not found"
            if rc == 128:
                return "Invalid argument to exit"
            return f"Exit {rc}"
        if result == "TIMEOUT":
            return "Timeout"
        return f"Exit {self.returncode}"

    def get_instance_info(self) -> JobInfo:
        """Fetch `instance.*` data from this job if it is a running child instance."""
        uri = self.uri.local if self.uri is not None and self.state_single == "R" else None
        self.__dict__["_instance"] = InstanceInfo(uri)
        return self

    # -------------------------------------------------------------- output
    def to_dict(self, filtered: bool = True) -> dict:
        """The job's attributes as a dict. With filtered (default), empty values, unset
        times (0) and a zero runtime or expiration are left out."""
        out: dict[str, Any] = {}
        for attr in chain(self.defaults, self.properties):
            try:
                val = getattr(self, attr)
            except AttributeError:
                continue
            if val is not None:
                out[attr] = val
        out["id"] = JobID(self.id)  # flux-core keeps the JobID (an int)
        out["dependencies"] = list(self.dependencies)
        out["annotations"] = json.loads(json.dumps(self.annotations.annotationsDict))
        out["exception"] = dict(vars(self.exception))
        if self.uri is not None:
            out["uri"] = str(self.uri)
        if not filtered:
            return out
        for key in list(out):
            val = out[key]
            if isinstance(val, str) and val == "":
                del out[key]
            elif (key.startswith("t_") or key in ("runtime", "expiration")) and val == 0:
                del out[key]
        if not out["exception"].get("occurred"):
            out["exception"] = {"occurred": False}
        if self.uri is not None:
            user = out["annotations"].get("user", {})
            user.pop("uri", None)
            if not user:
                out["annotations"].pop("user", None)
        return out


# field -> job-list attributes it needs ("id" is always returned)
_FIELD_ATTRS: dict[str, tuple[str, ...]] = {
    **{f: () for f in ("id", "id.dec", "id.hex", "id.f58", "id.f58plain", "id.emoji", "id.kvs",
                       "id.words", "id.dothex")},
    "userid": ("userid",), "username": ("userid",), "urgency": ("urgency",),
    "priority": ("priority",), "state": ("state",), "state_single": ("state",),
    "state_emoji": ("state",), "name": ("name",), "cwd": ("cwd",), "queue": ("queue",),
    "project": ("project",), "bank": ("bank",), "ntasks": ("ntasks",), "ncores": ("ncores",),
    "duration": ("duration",), "nnodes": ("nnodes",), "ranks": ("ranks",),
    "nodelist": ("nodelist",), "success": ("success",), "waitstatus": ("waitstatus",),
    "returncode": ("waitstatus", "result"),
    "exception.occurred": ("exception_occurred",),
    "exception.severity": ("exception_severity",), "exception.type": ("exception_type",),
    "exception.note": ("exception_note",), "result": ("result",),
    "result_abbrev": ("result",), "result_emoji": ("result",), "t_submit": ("t_submit",),
    "t_depend": ("t_depend",), "t_run": ("t_run",), "t_cleanup": ("t_cleanup",),
    "t_inactive": ("t_inactive",), "runtime": ("t_run", "t_cleanup"),
    "status": ("state", "result"), "status_abbrev": ("state", "result"),
    "status_emoji": ("state", "result"), "expiration": ("expiration", "state", "result"),
    "t_remaining": ("expiration", "state", "result"), "annotations": ("annotations",),
    "dependencies": ("dependencies",),
    "contextual_info": ("state", "dependencies", "annotations", "nodelist", "priority",
                        "urgency"),
    "contextual_time": ("state", "t_run", "t_cleanup", "duration"),
    "inactive_reason": ("state", "result", "waitstatus", "exception_occurred",
                        "exception_severity", "exception_type", "exception_note"),
    "sched": ("annotations",), "user": ("annotations",), "uri": ("annotations",),
    "uri.local": ("annotations",),
}


def job_fields_to_attrs(fields: Any) -> set[str]:
    """The job-list attributes needed to show format fields (ValueError if unknown)."""
    attrs: set[str] = set()
    for field in fields:
        if field.startswith(("annotations.", "sched.", "user.")):
            attrs.add("annotations")
        elif field.startswith("instance."):
            attrs.update(("annotations", "state", "result"))
        elif field in _FIELD_ATTRS:
            attrs.update(_FIELD_ATTRS[field])
        else:
            raise ValueError(f"Unknown format field: {field}")
    return attrs


class JobInfoFormat(OutputFormat):
    """The `flux jobs` output format: valid fields and their column headings."""

    headings = {
        **{f: "JOBID" for f in ("id", "id.dec", "id.hex", "id.f58", "id.f58plain", "id.emoji",
                                "id.kvs", "id.words", "id.dothex")},
        "userid": "UID", "username": "USER", "urgency": "URG", "priority": "PRI",
        "state": "STATE", "state_single": "S", "state_emoji": "STATE", "name": "NAME",
        "cwd": "CWD", "queue": "QUEUE", "project": "PROJECT", "bank": "BANK",
        "ntasks": "NTASKS", "ncores": "NCORES", "duration": "DURATION", "nnodes": "NNODES",
        "expiration": "EXPIRATION", "t_remaining": "T_REMAINING", "ranks": "RANKS",
        "nodelist": "NODELIST", "success": "SUCCESS", "result": "RESULT",
        "result_abbrev": "RS", "result_emoji": "RESULT", "t_submit": "T_SUBMIT",
        "t_depend": "T_DEPEND", "t_run": "T_RUN", "t_cleanup": "T_CLEANUP",
        "t_inactive": "T_INACTIVE", "runtime": "RUNTIME", "status": "STATUS",
        "status_abbrev": "ST", "status_emoji": "STATUS", "waitstatus": "WSTATUS",
        "returncode": "RC", "exception.occurred": "EXCEPTION-OCCURRED",
        "exception.severity": "EXCEPTION-SEVERITY", "exception.type": "EXCEPTION-TYPE",
        "exception.note": "EXCEPTION-NOTE", "annotations": "ANNOTATIONS",
        "dependencies": "DEPENDENCIES", "contextual_info": "INFO", "contextual_time": "TIME",
        "inactive_reason": "INACTIVE-REASON",
        "annotations.sched.t_estimate": "T_ESTIMATE",
        "annotations.sched.reason_pending": "REASON",
        "annotations.sched.resource_summary": "RESOURCES",
        "sched": "SCHED", "sched.t_estimate": "T_ESTIMATE", "sched.reason_pending": "REASON",
        "sched.resource_summary": "RESOURCES", "user": "USER", "uri": "URI", "uri.local": "URI",
        "instance.stats.total": "NJOBS", "instance.utilization": "CORE%",
        "instance.gpu_utilization": "GPU%", "instance.progress": "PROG",
        "instance.resources.all.ncores": "CORES", "instance.resources.all.ngpus": "GPUS",
        "instance.resources.all.nnodes": "NODES",
        "instance.resources.up.ncores": "UP", "instance.resources.up.ngpus": "UP",
        "instance.resources.up.nnodes": "UP",
        "instance.resources.down.ncores": "DOWN", "instance.resources.down.ngpus": "DOWN",
        "instance.resources.down.nnodes": "DOWN",
        "instance.resources.allocated.ncores": "USED",
        "instance.resources.allocated.ngpus": "USED",
        "instance.resources.allocated.nnodes": "USED",
        "instance.resources.free.ncores": "FREE", "instance.resources.free.ngpus": "FREE",
        "instance.resources.free.nnodes": "FREE",
    }

    def __init__(self, fmt: str, headings: dict | None = None, prepend: str | None = None):
        heads = dict(headings if headings is not None else self.headings)
        for _, field, _, _ in string.Formatter().parse(fmt):
            if not field or field in heads:
                continue
            if field.startswith("annotations."):
                heads[field] = field[len("annotations."):].upper()
            elif field.startswith(("sched.", "user.")):
                heads[field] = field.upper()
            elif field.startswith("instance."):
                h = field[len("instance."):].upper()
                heads[field] = h[len("RESOURCES."):] if h.startswith("RESOURCES.") else h
        super().__init__(fmt, headings=heads, prepend=prepend)
