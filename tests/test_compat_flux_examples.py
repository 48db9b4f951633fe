"""The Python examples of Flux's documentation and tutorials, as scripts run with the
instance's FLUX_URI: flux-core's job-submission guide (FluxExecutor with
as_completed, the submit_async/result_async event loop), the tutorial SDK notebook
(JobspecV1.from_command, result().to_dict(), JobID forms, get_job) and the
flux-workflow-examples flows (waitable jobs and job.wait, asynchronous bulk submission
of jobspec files, JobList and cancel, event_watch_async on both eventlogs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


def run(inst, tmp_path, body: str, *args: str) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(body))
    r = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=inst.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_executor_as_completed_and_callbacks(inst, tmp_path):
    out = run(inst, tmp_path, """
        import concurrent.futures
        import flux.job

        jobspec = flux.job.JobspecV1.from_command(["/bin/true"])
        events = []
        with flux.job.FluxExecutor() as executor:
            futs = [executor.submit(jobspec) for _ in range(5)]
            futs[0].add_event_callback("start", lambda fut, ev: events.append(ev.name))
            for f in concurrent.futures.as_completed(futs):
                print("result", f.result())
            again = executor.attach(futs[1].jobid())
            print("attached", again.result(), again.jobid() == futs[1].jobid())
            bad = executor.submit(flux.job.JobspecV1.from_command(["sh", "-c", "exit 3"]))
            print("failed", bad.result())
        print("events", events)
        """)
    assert out == ["result 0"] * 5 + ["attached 0 True", "failed 3", "events ['start']"]


def test_event_loop_submit_and_result(inst, tmp_path):
    out = run(inst, tmp_path, """
        import flux
        import flux.job

        def submit_cb(fut, flux_handle):
            jobid = fut.get_id()
            flux.job.result_async(flux_handle, jobid).then(result_cb)

        def result_cb(fut):
            info = fut.get_info()
            print(info.result, info.returncode, info.runtime >= 0)

        flux_handle = flux.Flux()
        jobspec = flux.job.JobspecV1.from_command(["/bin/true"])
        for _ in range(3):
            flux.job.submit_async(flux_handle, jobspec).then(submit_cb, flux_handle)
        failing = flux.job.JobspecV1.from_command(["/bin/false"])
        flux.job.submit_async(flux_handle, failing).then(submit_cb, flux_handle)
        print("reactor", flux_handle.reactor_run())
        """)
    assert sorted(out[:-1]) == ["COMPLETED 0 True"] * 3 + ["FAILED 1 True"]
    assert out[-1] == "reactor 0"


def test_sdk_notebook_jobspec_result_jobid(inst, tmp_path):
    out = run(inst, tmp_path, """
        import json
        import flux
        import flux.job
        from flux.job import JobspecV1
        from flux.job.JobID import JobID

        f = flux.Flux()
        jobspec = JobspecV1.from_command(command=["sleep", "0"], num_tasks=1, num_nodes=1,
                                         cores_per_task=1)
        jobspec.environment = {"TMPDIR": "/tmp/"}
        jobid = flux.job.submit(f, jobspec)
        info = flux.job.result(f, jobid)
        d = info.to_dict()
        print(json.dumps({k: d[k] for k in ("result", "returncode", "waitstatus")}))
        fid = JobID(jobid.f58)
        print(fid == jobid, fid.dec == str(int(jobid)), fid.real == int(jobid))
        print(JobID(fid.hex) == JobID(fid.dothex) == JobID(fid.words) == JobID(fid.f58plain)
              == JobID(fid.kvs) == JobID(fid.emoji) == fid)
        job = flux.job.get_job(f, fid)
        print(job["state"], job["status"], job["name"], job["ntasks"], repr(job["id"]) == repr(fid))
        print(flux.job.get_job(f, 12345))
        """)
    assert json.loads(out[0]) == {"result": "COMPLETED", "returncode": 0, "waitstatus": 0}
    assert out[1:] == ["True True True", "True", "INACTIVE COMPLETED sleep 1 True", "None"]


def test_sliding_window_of_waitable_jobs(inst, tmp_path):
    out = run(inst, tmp_path, """
        import os
        import flux
        from flux import job
        from flux.job import JobspecV1

        h = flux.Flux()
        good = JobspecV1.from_command(command=["true"], num_tasks=2, cores_per_task=1)
        good.cwd = os.getcwd()
        good.environment = dict(os.environ)
        bad = JobspecV1.from_command(["/bin/false"])
        njobs, window, done, running, failed = 6, 2, 0, 0, 0
        while done < njobs:
            if running < window and done + running < njobs:
                spec = bad if (done + running) % 3 == 2 else good
                job.submit(h, spec, waitable=True)
                running += 1
            if running == window or done + running == njobs:
                jobid, success, errstr = job.wait(h)
                if not success:
                    failed += 1
                    print("error:", errstr)
                done += 1
                running -= 1
        print("done", done, "failed", failed)
        """)
    assert out[-1] == "done 6 failed 2"
    assert out[:-1] == ["error: task(s) exited with exit code 1"] * 2


def test_async_bulk_submission_of_jobspec_files(inst, tmp_path):
    for i in range(4):
        r = subprocess.run(["flux", "submit", "--dry-run", "sh", "-c", f"exit {i % 2}"],
                           env=inst.env, capture_output=True, text=True, check=True)
        (tmp_path / f"job{i}.json").write_text(r.stdout)
    out = run(inst, tmp_path, """
        import sys
        import flux
        from flux import job

        h = flux.Flux()
        jobs = []

        def submit_cb(f, arg):
            jobs.append(job.submit_get_id(f))

        for file in sys.argv[1:]:
            with open(file) as jobspec:
                job.submit_async(h, jobspec.read(), waitable=True).then(submit_cb, None)
        if h.reactor_run() < 0:
            sys.exit("reactor start failed")
        results = sorted(job.wait(h).success for _ in jobs)
        print(len(jobs), results)
        """, *(f"job{i}.json" for i in range(4)))
    assert out == ["4 [False, False, True, True]"]


def test_joblist_and_cancel(inst, tmp_path):
    out = run(inst, tmp_path, """
        import os
        import flux
        import flux.job
        from flux.job import JobspecV1

        f = flux.Flux()
        ncores = len(os.sched_getaffinity(0))
        sleep = JobspecV1.from_command(["sleep", "60"], num_tasks=1, cores_per_task=ncores)
        first = flux.job.submit(f, sleep, waitable=True)
        flux.job.event_wait(f, first, "start")
        second = flux.job.submit(f, sleep, waitable=True)
        flux.job.event_wait(f, second, "priority")
        jobs = flux.job.JobList(f, max_entries=2).jobs()
        print(jobs[1].id == first, jobs[1].status, jobs[0].id == second, jobs[0].status)
        flux.job.cancel(f, first)
        return_id, success, errmsg = flux.job.wait_async(f, first).wait_for(5.0).get_status()
        print(return_id == first, success, errmsg)
        flux.job.event_wait(f, second, "start")
        jobs = flux.job.JobList(f, max_entries=2).jobs()
        print(jobs[1].status, jobs[0].status)
        flux.job.cancel(f, second)
        print(flux.job.wait(f, second).success)
        """)
    assert out == ["True RUN True SCHED", "True False Fatal exception type=cancel",
                   "CANCELED RUN", "False"]


def test_event_watch_both_eventlogs(inst, tmp_path):
    out = run(inst, tmp_path, """
        import flux
        import flux.job
        from flux import job
        from flux.job import JobID, JobspecV1

        h = flux.Flux()
        jobid = JobID(flux.job.submit(h, JobspecV1.from_command(["true"]))).dec
        names = {"eventlog": [], "guest.exec.eventlog": []}

        def cb(future, h, log):
            event = future.get_event()
            if event is None:
                return
            names[log].append(event.name)
            if event.name == "start":
                job.event_watch_async(h, jobid, eventlog="guest.exec.eventlog").then(
                    cb, h, "guest.exec.eventlog")

        job.event_watch_async(h, jobid).then(cb, h, "eventlog")
        h.reactor_run()
        print(" ".join(names["eventlog"]))
        print(" ".join(names["guest.exec.eventlog"]))
        """)
    assert out[0].split()[0] == "submit" and out[0].split()[-1] == "clean"
    assert {"validate", "depend", "priority", "alloc", "start", "finish", "release",
            "free"} <= set(out[0].split())
    exec_events = out[1].split()
    assert exec_events[0] == "init" and exec_events[-1] == "done"
    assert {"starting", "shell.init", "shell.start", "complete"} <= set(exec_events)
