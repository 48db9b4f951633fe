"""A broker started as a job's task is (part of) a child instance (SPEC 6.5, 6.6).

What the enclosing job tells us comes from the environment its shell gives every
task: `FLUX_URI` (the parent broker on this node), `FLUX_JOB_ID`, `FLUX_JOB_ID_PATH`,
`FLUX_KVS_NAMESPACE` and `FLUX_JOB_TMPDIR`. From them the broker sets the
attributes `parent-uri`, `jobid` (F58), `jobid-path`, `instance-level` (one more
than the parent's: the number of ids in the path) and `parent-kvs-namespace`.
A PMI bootstrap may set any of these first; those values win.

Once the child is up, its rank 0 tells the parent where it listens: the memo
`{"uri": "ssh://HOST/PATH"}` on its job (RFC 21 `memo`, shown by `flux jobs` as
`annotations.user.uri` and read by `flux uri JOBID`), and `job-exec.critical-ranks`
so that the parent knows the job is an instance (a broker killed by a signal then
fails the job with a clear exception). HOST is this machine's real name, even when
the parent runs on fake host names (`--test-hosts`, `resource.config`): it is where
the socket is.

The parent is reached through a blocking handle run in a worker thread: a few RPCs
at start-up, none on the job path.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping

from flux.core.hookspecs import hookimpl

SOCKET_PATH_MAX = 100  # sun_path is 108 bytes: leave room for "/local-NNNN"


def job_attrs(environ: Mapping[str, str]) -> dict[str, str]:
    """Attributes of a broker whose environment says it is a job's task (else {})."""
    jobid = environ.get("FLUX_JOB_ID")
    parent = environ.get("FLUX_URI")
    if not jobid or not parent:
        return {}
    from flux.core.job import fluid

    try:
        jobid = fluid.encode_f58(fluid.parse(jobid))
    except (ValueError, OSError):
        return {}
    path = environ.get("FLUX_JOB_ID_PATH") or f"/{jobid}"
    level = len([p for p in path.split("/") if p])
    attrs = {"parent-uri": parent, "jobid": jobid, "jobid-path": path,
             "instance-level": str(level)}
    ns = environ.get("FLUX_KVS_NAMESPACE")
    if ns:
        attrs["parent-kvs-namespace"] = ns
    return attrs


def job_rundir(environ: Mapping[str, str]) -> str | None:
    """A new rundir inside the job's FLUX_JOB_TMPDIR (removed with the job, as Flux
    does), unless the socket path would be too long there (deep nesting): None."""
    tmpdir = environ.get("FLUX_JOB_TMPDIR")
    if not tmpdir or not os.path.isdir(tmpdir):
        return None
    if len(os.fsencode(tmpdir)) + len("/flux-XXXXXXXX/local-0000") > SOCKET_PATH_MAX:
        return None
    try:
        return tempfile.mkdtemp(prefix="flux-", dir=tmpdir)
    except OSError:
        return None


def instance_uri(broker) -> str:
    """The URI the parent records for this instance: ssh://<this host><socket path>."""
    local = broker.attrs["local-uri"]
    path = local[len("local://"):] if local.startswith("local://") else local
    return f"ssh://{os.uname().nodename}{path}"


def _tell_parent(parent_uri: str, jobid: int, uri: str) -> None:
    import flux

    h = flux.Flux(parent_uri)
    try:
        h.rpc("job-manager.memo", {"id": jobid, "memo": {"uri": uri}}).get()
        try:
            h.rpc("job-exec.critical-ranks", {"id": jobid, "ranks": "0"}).get()
        except OSError:
            pass  # a parent without the RPC still runs us
    finally:
        h.close()


async def publish_uri(broker) -> None:
    from flux.core.job import fluid

    a = broker.attrs
    try:
        jobid = fluid.parse(a["jobid"])
        await asyncio.get_running_loop().run_in_executor(
            None, _tell_parent, a["parent-uri"], jobid, instance_uri(broker))
    except Exception as exc:  # noqa: BLE001 - the instance runs on; `flux uri` will say
        broker.log(3, f"could not record this instance's URI in the parent: "
                      f"{getattr(exc, 'strerror', None) or exc}")
        return
    broker.log(6, f"URI recorded in the parent as job {a['jobid']}")


def is_child(broker) -> bool:
    a = broker.attrs
    return bool(a.get("jobid")) and bool(a.get("parent-uri"))


@hookimpl
def broker_ready(broker):
    if broker.rank == 0 and is_child(broker):
        broker.uri_published = asyncio.ensure_future(publish_uri(broker))
