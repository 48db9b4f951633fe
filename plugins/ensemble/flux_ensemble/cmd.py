"""`flux ensemble`: run an ensemble of jobs through a tree of instances.

    flux ensemble run [--shape=S | --depth=D] [--policy=P] -n N [--test-exec] CMD...
    flux ensemble status [--wait] [--json]
    flux ensemble drain

`run` uses the current instance's tree when it is an ensemble root; otherwise it
brings one up (a new instance with `flux start`, or a job of the current instance
taking all its nodes) and runs itself inside it. It submits N copies of CMD at the
root, shows a progress bar on a terminal, waits for them all, and reports the
throughput and, for each level of the tree, how long it was busy and the CPU time
its brokers spent per job.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from flux.core.job import fluid

from flux_ensemble import children
from flux_ensemble import shape as shapes

STREAMING = 2


def _handle(uri: str | None = None):
    import flux

    return flux.Flux(uri) if uri else flux.Flux()


def _status(h, wait: bool = False) -> dict:
    try:
        return h.rpc("ensemble.status", {"wait": wait}).get()
    except OSError as exc:
        if getattr(exc, "errno", None) == 38:  # ENOSYS: no [ensemble] here
            return {"enabled": False}
        raise


# ------------------------------------------------------------------ status
def _print_tree(t: dict, indent: str = "") -> None:
    kids = t.get("children") or []
    print(f"{indent}{t.get('uri')} pid={t.get('pid')} shape={t.get('shape')!r} "
          f"children={len(kids)}")
    for k in kids:
        _print_tree(k, indent + "  ")


def cmd_status(args) -> int:
    h = _handle()
    st = _status(h, wait=args.wait)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0 if st.get("enabled") and not st.get("error") else 1
    if not st.get("enabled"):
        print("this instance is not an ensemble (no [ensemble] table in its config)")
        return 1
    print(f"shape: {st.get('shape') or '(leaf)'}  policy: {st.get('policy')}  "
          f"role: {st.get('role')}  ready: {st.get('ready')}")
    if st.get("error"):
        print(f"error: {st['error']}")
        return 1
    if st.get("role") == "leaf":
        active = st.get("active") or []
        print(f"  ran {st.get('ran', 0)} jobs, {len(active)} active")
        for j in active:
            print(f"  job {j['id']} (origin {j['origin']}): {j['state']}")
    for c in st.get("children") or []:
        jid = fluid.encode_f58(c["id"]) if isinstance(c.get("id"), int) else c.get("id")
        print(f"  child {c['index']}: job {jid} {c['state']} ({c['resources']}) "
              f"sent={c['sent']} done={c['done']} outstanding={c['outstanding']}"
              + (f" error: {c['error']}" if c.get("error") else ""))
    if args.tree and st.get("tree"):
        _print_tree(st["tree"])
    return 0


def cmd_drain(args) -> int:
    h = _handle()
    st = _status(h)
    if not st.get("enabled"):
        print("flux-ensemble: this instance is not an ensemble", file=sys.stderr)
        return 1
    r = h.rpc("ensemble.drain", {}).get()
    print(f"{r['completed']} jobs completed, {r['failed']} failed")
    return 0


# --------------------------------------------------------------------- run
def _levels(args) -> tuple[str, ...] | None:
    if args.shape is not None and args.depth is not None:
        raise SystemExit("flux-ensemble: give --shape or --depth, not both")
    try:
        if args.depth is not None:
            return shapes.from_depth(args.depth)
        if args.shape is not None:
            return shapes.parse(args.shape)
    except shapes.ShapeError as exc:
        raise SystemExit(f"flux-ensemble: {exc}") from None
    return None


def _inner_argv(args) -> list[str]:
    """This command again, to run inside the instance it brings up."""
    argv = [sys.argv[0] if os.path.basename(sys.argv[0]) == "flux" else "flux", "ensemble",
            "run", "--inside", f"-n{args.njobs}", f"--batch={args.batch}",
            f"--window={args.window}", f"--run-duration={args.run_duration}"]
    if args.test_exec:
        argv.append("--test-exec")
    if args.json:
        argv.append("--json")
    if args.progress is not None:
        argv.append("--progress" if args.progress else "--no-progress")
    for s in args.setattr or []:
        argv.append(f"--setattr={s}")
    return argv + ["--", *args.command]


def _bring_up(args, levels: tuple[str, ...]) -> int:
    conf = [f'ensemble.shape="{shapes.render(levels)}"', f'ensemble.policy="{args.policy}"']
    inner = _inner_argv(args)
    flux = os.path.join(os.path.dirname(sys.executable), "flux")
    if not os.access(flux, os.X_OK):
        flux = "flux"
    inner[0] = flux
    if os.environ.get("FLUX_URI") and not args.new_instance:
        # a job of the current instance over all its nodes, as flux batch would make
        from flux.job import JobspecV1, submit
        from flux.kvs import get_key_direct

        h = _handle()
        R = get_key_direct(h, "resource.R")
        nnodes = len(children.ranks_of(R if isinstance(R, dict) else json.loads(R))) or 1
        js = JobspecV1.from_nest_command(
            inner, num_slots=nnodes, num_nodes=nnodes, exclusive=True,
            broker_opts=[f"--conf={c}" for c in conf], name="ensemble-root")
        js.jobspec["tasks"][0]["command"][0] = flux
        jobid = submit(h, js)
        return subprocess.call([flux, "job", "attach", str(jobid)])
    cmd = [flux, "start", *args.start_opt, *[f"--conf={c}" for c in conf], "--", *inner]
    if args.verbose:
        print("flux-ensemble: " + shlex.join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def _walk(tree: dict, level: int = 0):
    yield level, tree
    for k in tree.get("children") or []:
        yield from _walk(k, level + 1)


def _stats_all(tree: dict) -> list[tuple[int, dict]]:
    out = []
    for level, node in _walk(tree):
        uri = node.get("uri")
        if not uri:
            continue
        try:
            h = _handle(uri)
            out.append((level, h.rpc("ensemble.stats", {}).get()))
            h.close()
        except OSError as exc:
            out.append((level, {"error": str(exc)}))
    return out


def _jobspec_J(args, h) -> str:
    from flux.core.security.sign import wrap_none
    from flux.job import JobspecV1

    js = JobspecV1.from_command(args.command, cwd=os.getcwd())
    if args.test_exec:
        js.setattr("system.exec.test", {"run_duration": args.run_duration})
    for s in args.setattr or []:
        k, _, v = s.partition("=")
        try:
            val = json.loads(v)
        except ValueError:
            val = v
        js.setattr(k if k.startswith(("system.", "user.")) else f"system.{k}", val)
    return wrap_none(js.dumps().encode(), os.getuid())


def cmd_run(args) -> int:
    levels = _levels(args)
    uri = os.environ.get("FLUX_URI")
    st = {"enabled": False}
    if uri:
        try:
            st = _status(_handle())
        except OSError:
            st = {"enabled": False}
    if not (st.get("enabled") and st.get("shape")):
        if args.inside:
            print("flux-ensemble: the instance brought up for this run is not an ensemble",
                  file=sys.stderr)
            return 1
        if levels is None:
            print("flux-ensemble: this instance is not an ensemble root: give --shape or "
                  "--depth to bring one up", file=sys.stderr)
            return 1
        if not levels:
            print("flux-ensemble: depth 1 has no children: use flux submit", file=sys.stderr)
            return 1
        return _bring_up(args, levels)
    if levels is not None and shapes.render(levels) != st["shape"]:
        print(f"flux-ensemble: this instance's ensemble has shape {st['shape']!r}, not "
              f"{shapes.render(levels)!r} (run it outside this instance to bring up another)",
              file=sys.stderr)
        return 1
    return _run_here(args)


def _run_here(args) -> int:
    h = _handle()
    t_up0 = time.time()
    st = _status(h, wait=True)
    if st.get("error"):
        print(f"flux-ensemble: {st['error']}", file=sys.stderr)
        return 1
    t_up = time.time() - t_up0
    before = _stats_all(st["tree"])
    J = _jobspec_J(args, h)
    n = args.njobs
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = None
    if show:
        from flux.cmd.jobopts import ProgressBar

        bar = ProgressBar(n, before="", after="{count}/{total} jobs {jps:.1f} jobs/s ",
                          stream=sys.stderr)

    state = {"submitted": 0, "inflight": 0, "errors": [], "base": None, "done": 0,
             "failed": 0, "t_submitted": None}
    t0 = time.time()

    def progress_cb(f):
        c = f.get()
        f.reset()
        if state["base"] is None:
            state["base"] = c
            return
        done = c["completed"] - state["base"]["completed"]
        state["failed"] = c["failed"] - state["base"]["failed"]
        if bar is not None and done != state["done"]:
            bar.update(done - state["done"])
        state["done"] = done
        if done >= n and state["submitted"] >= n:
            h.reactor_stop()

    h.rpc("ensemble.progress", {}, flags=STREAMING).then(progress_cb)
    while state["base"] is None:  # counts before our jobs
        h.reactor_run(2)  # one pass

    def submitted_cb(f):
        state["inflight"] -= 1
        try:
            for r in f.get()["jobs"]:
                if "errstr" in r:
                    state["errors"].append(r["errstr"])
        except OSError as exc:
            state["errors"].append(str(exc))
        send()

    def send():
        while state["inflight"] < args.window and state["submitted"] < n:
            k = min(args.batch, n - state["submitted"])
            state["submitted"] += k
            state["inflight"] += 1
            h.rpc("job-ingest.submit", {"jobs": [{"J": J, "urgency": 16, "flags": 0}] * k}) \
                .then(submitted_cb)
        if state["submitted"] >= n and state["inflight"] == 0 and state["t_submitted"] is None:
            state["t_submitted"] = time.time()
        if state["errors"]:
            h.reactor_stop()

    send()
    h.reactor_run()
    t_end = time.time()
    if bar is not None:
        bar.finish()
    if state["errors"]:
        print(f"flux-ensemble: {len(state['errors'])} submission(s) refused: {state['errors'][0]}",
              file=sys.stderr)
        return 1
    after = _stats_all(st["tree"])
    elapsed = t_end - t0
    report = {"jobs": n, "failed": state["failed"], "elapsed": elapsed, "jobs_per_s": n / elapsed,
              "submit_s": (state["t_submitted"] or t_end) - t0, "tree_ready_wait_s": t_up,
              "shape": st["shape"], "policy": st["policy"],
              "levels": _levels_report(before, after, n, t0)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{n} jobs in {elapsed:.2f}s: {report['jobs_per_s']:.1f} jobs/s "
              f"(shape {st['shape']}, policy {st['policy']}; submitted in "
              f"{report['submit_s']:.2f}s; {state['failed']} failed)")
        for lv in report["levels"]:
            print(f"  level {lv['level']}: {lv['instances']} instance(s), {lv['jobs']} jobs, "
                  f"busy {lv['span_s']:.2f}s, broker CPU {lv['cpu_s']:.2f}s "
                  f"({lv['cpu_ms_per_job']:.3f} ms/job)")
    return 1 if state["failed"] else 0


def _levels_report(before: list, after: list, n: int, t0: float) -> list[dict]:
    levels: dict[int, dict] = {}
    for (lv, b), (_lv, a) in zip(before, after, strict=False):
        d = levels.setdefault(lv, {"level": lv, "instances": 0, "jobs": 0, "cpu_s": 0.0,
                                   "t_first": None, "t_last": None})
        d["instances"] += 1
        if "error" in a or "error" in b:
            continue
        d["cpu_s"] += a["cpu"] - b["cpu"]
        jobs = (a.get("ran", 0) - b.get("ran", 0)) if a.get("role") == "leaf" else \
            (a.get("forwarded", 0) - b.get("forwarded", 0))
        d["jobs"] += jobs
        if not jobs:
            continue
        tf = max(a.get("t_first") or t0, t0)  # this run's, not an earlier run's
        d["t_first"] = tf if d["t_first"] is None else min(d["t_first"], tf)
        tl = a.get("t_last") or a.get("time")
        d["t_last"] = tl if d["t_last"] is None else max(d["t_last"], tl)
    out = []
    for lv in sorted(levels):
        d = levels[lv]
        span = (d["t_last"] - d["t_first"]) if d["t_first"] and d["t_last"] else 0.0
        out.append({"level": lv, "instances": d["instances"], "jobs": d["jobs"], "span_s": span,
                    "cpu_s": d["cpu_s"], "cpu_ms_per_job": 1000 * d["cpu_s"] / max(n, 1)})
    return out


# -------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flux ensemble", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="sub", required=True)
    r = sub.add_parser("run", help="run N jobs through a tree of instances")
    r.add_argument("--shape", help="levels below the root: node, core or a number, "
                                   "separated by x or comma (e.g. node,core or 2x4)")
    r.add_argument("--depth", type=int, help="2: one child per node; 3: and one grandchild "
                                             "per core")
    r.add_argument("--policy", default="rr", choices=["rr", "least-loaded"])
    r.add_argument("-n", "--njobs", type=int, required=True, help="number of jobs")
    r.add_argument("--test-exec", action="store_true",
                   help="jobs run in test mode (no processes, --run-duration each)")
    r.add_argument("--run-duration", default="0.001s", help="test-exec run time (FSD)")
    r.add_argument("-S", "--setattr", action="append", help="jobspec attribute KEY=VAL")
    r.add_argument("--batch", type=int, default=512, help="jobs per submit request")
    r.add_argument("--window", type=int, default=8, help="submit requests in flight")
    r.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    r.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("-o", "--start-opt", action="append", default=[],
                   help="option for flux start when a new instance is brought up "
                        "(e.g. -o--test-size=4 -o--conf=resource.config=...)")
    r.add_argument("--new-instance", action="store_true",
                   help="bring up the tree with flux start even inside an instance")
    r.add_argument("-v", "--verbose", action="store_true")
    r.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("status", help="show this instance's ensemble")
    s.add_argument("--wait", action="store_true", help="wait until the tree is up")
    s.add_argument("--json", action="store_true")
    s.add_argument("--tree", action="store_true", help="print every instance of the tree")
    sub.add_parser("drain", help="wait until no job sent down is active")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.sub == "run":
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        if not args.command:
            print("flux-ensemble: a command is required", file=sys.stderr)
            return 2
        if args.njobs < 1:
            print("flux-ensemble: -n must be at least 1", file=sys.stderr)
            return 2
        return cmd_run(args)
    if args.sub == "status":
        return cmd_status(args)
    return cmd_drain(args)
