"""`jobid:PATH`: the URI of a running job's instance, from the `uri` memo its rank 0
recorded in the job's eventlog (SPEC 6.6).

PATH is one or more job ids separated by `/`, each looked up in the instance the
previous one names, starting from the enclosing instance (FLUX_URI). A leading `/`
starts from the root of the tree, `..` is the parent instance. The job must be
running, unless `?wait` is given: then the memo is waited for. Each hop goes
through the local form of the URI when `?local` or FLUX_URI_RESOLVE_LOCAL is set
(or when the instance is on this host, which the ssh connector handles itself).
"""

from __future__ import annotations

import os

from flux.uri.uri import JobURI, URIResolverPlugin, URIResolverURI


def _attr(h, name: str) -> str | None:
    try:
        return h.attr_get(name)
    except OSError:
        return None


def _root_uri(uri: str | None) -> str | None:
    """Follow parent-uri up from `uri` (None: FLUX_URI) to the root instance."""
    import flux

    current = uri
    for _ in range(64):  # a tree deeper than this is a loop
        h = flux.Flux(current)
        try:
            parent = _attr(h, "parent-uri")
            local = _attr(h, "local-uri")
        finally:
            h.close()
        if not parent:
            return local or current
        current = parent
    raise ValueError("the chain of parent instances is too long")


def job_uri(h, arg: str, wait: bool = False) -> str:
    """The recorded URI of job `arg` in the instance of handle `h`."""
    from flux.job.event import event_watch
    from flux.job.JobID import JobID

    try:
        jobid = JobID(arg)
    except (OSError, ValueError):
        raise ValueError(f"{arg} is not a valid jobid") from None
    try:
        events = list(_eventlog(h, jobid)) if not wait else event_watch(h, jobid)
        uri = None
        started = False
        for ev in events:
            if ev.name == "start":
                started = True
            elif ev.name == "memo" and "uri" in (ev.context or {}):
                uri = ev.context["uri"]
                if wait:
                    return uri
            elif ev.name in ("finish", "clean"):
                raise ValueError(f"jobid {arg} is not running")
    except FileNotFoundError:
        raise ValueError(f"jobid {arg} not found") from None
    except OSError as exc:
        if getattr(exc, "errno", None) == 2:
            raise ValueError(f"jobid {arg} not found") from None
        raise
    if not started:
        raise ValueError(f"jobid {arg} is not running")
    if not uri:
        raise ValueError(f"URI not found for job {arg}")
    return uri


def _eventlog(h, jobid):
    from flux.job.event import EventLogEvent

    resp = h.rpc("job-info.lookup", {"id": int(jobid), "keys": ["eventlog"], "flags": 0}).get()
    for line in resp["eventlog"].splitlines():
        if line.strip():
            yield EventLogEvent(line)


class URIResolver(URIResolverPlugin):
    def describe(self) -> str:
        return "Get URI for a given Flux JOBID"

    def resolve(self, uri: URIResolverURI) -> str:
        import flux

        query = uri.query_dict
        force_local = "local" in query or bool(os.environ.get("FLUX_URI_RESOLVE_LOCAL"))
        wait = "wait" in query
        path = uri.path
        parts = [p for p in path.split("/") if p and p != "."]
        current: str | None = None  # FLUX_URI
        if path.startswith("/"):
            current = _root_uri(None)
            if not parts:
                return current
        if not parts:
            raise ValueError(f"no jobid in '{uri.uri}'")
        result = None
        for part in parts:
            h = flux.Flux(current)
            try:
                if part == "..":
                    result = _attr(h, "parent-uri")
                    if not result:
                        raise ValueError("this instance has no parent")
                else:
                    result = job_uri(h, part, wait)
            finally:
                h.close()
            current = JobURI(result).local if force_local else result
        return result
