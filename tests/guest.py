"""Run requests as another (guest) uid from a root test process.

The test venv's interpreter may live where a guest cannot read it (e.g. under /root),
so a guest cannot run the `flux` CLI. Instead we fork, warm every import with one request
as root, drop to the guest uid, and connect again: the broker sees the guest's uid in the
socket's peer credentials, exactly as for a guest's own `flux` command.
"""

from __future__ import annotations

import json
import os
import traceback


def guest_rpcs(uri: str, uid: int, calls: list[tuple[str, dict]], gid: int | None = None) -> list:
    """Send each (topic, payload) as `uid`; return [["ok", response] | ["err", errnum, text]]."""
    import flux
    from flux.core.errors import FluxError

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        out: list = []
        try:
            h = flux.Flux(uri)
            h.rpc("attr.get", {"name": "rank"}).get()  # warm every lazy import as root
            del h
            os.setgroups([])
            os.setgid(gid if gid is not None else uid)
            os.setuid(uid)
            h = flux.Flux(uri)
            for topic, payload in calls:
                try:
                    out.append(["ok", h.rpc(topic, payload).get()])
                except FluxError as exc:
                    out.append(["err", exc.errno, exc.strerror])
        except BaseException:  # noqa: BLE001 - reported to the parent
            out = [["crash", traceback.format_exc()]]
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    res = json.loads(data)
    if res and res[0][0] == "crash":
        raise AssertionError(f"guest client failed:\n{res[0][1]}")
    return res


def guest_submit(uri: str, uid: int, jobspec, urgency: int = 16) -> list:
    """Submit a jobspec as `uid` (signed with `none`, as a guest's own flux would today)."""
    from flux.core.security.sign import wrap_none

    jobspec = jobspec.dumps() if hasattr(jobspec, "dumps") else json.dumps(jobspec)
    J = wrap_none(jobspec.encode(), uid)
    return guest_rpcs(uri, uid, [("job-ingest.submit", {"J": J, "urgency": urgency, "flags": 0})])[0]
