"""Maestro (maestrowf) runs unmodified against our instance with its flux adapter
(maestrowf/interfaces/script/_flux/flux0_49_0.py: JobspecV1.from_command /
from_nest_command with queue/bank/conf/exclusive, jobspec.setattr, flux.job.submit,
flux.job.list.JobList(ids=...).jobs() with status_abbrev, JobID.f58, flux.job.cancel,
attr_get("version"), the config.get RPC); its job scripts use `flux run`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("maestrowf", reason="maestrowf is not installed (pip install maestrowf)")
# maestro loads its adapters with the deprecated importlib load_module()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WAIT = 60

STUDY = textwrap.dedent("""\
    description:
      name: flux_study
      description: steps under the flux adapter, one nested in a child instance
    batch:
      type: flux
      host: localhost
    env:
      variables:
        OUTPUT_PATH: ./studies
    study:
      - name: hello
        description: a plain job in the instance
        run:
          cmd: |
            echo "hello from $FLUX_JOB_ID" > hello.txt
          procs: 1
          nodes: 1
          walltime: "00:01:00"
          nested: False
      - name: count
        description: a child instance that runs its own job with $(LAUNCHER)
        run:
          cmd: |
            $(LAUNCHER) sh -c 'cat ../hello/hello.txt; flux getattr size' > count.txt
          procs: 1
          nodes: 1
          walltime: "00:01:00"
          nested: True
          depends: [hello]
      - name: broken
        description: a step whose job fails
        run:
          cmd: |
            exit 3
          procs: 1
          nodes: 1
          walltime: "00:01:00"
          nested: False
    """)


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(1)
    yield i
    i.stop()


@pytest.mark.slow
def test_study_runs_through_the_flux_adapter(inst, tmp_path):
    from conftest import BIN

    (tmp_path / "study.yaml").write_text(STUDY)
    env = dict(inst.env, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "maestro"), "run", "-y", "-fg", "-s", "1", "study.yaml"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]  # StudyStatus.FAILURE: one step failed
    [study] = (tmp_path / "studies").iterdir()
    with open(study / "status.csv") as fh:
        states = {row["Step Name"]: row["State"] for row in csv.DictReader(fh)}
    assert states == {"hello": "FINISHED", "count": "FINISHED", "broken": "FAILED"}, r.stderr[-3000:]
    hello = (study / "hello" / "hello.txt").read_text()
    assert hello.startswith("hello from ƒ")
    # the nested step's job ran `flux run` inside its own one-broker instance
    assert (study / "count" / "count.txt").read_text() == hello + "1\n"
    # the adapter's --output/--error templates ({{id}}) were rendered by the shell
    assert any(p.name.startswith("hello.ƒ") and p.suffix == ".out"
               for p in (study / "hello").iterdir())


def test_script_adapter_submit_status_cancel(inst, tmp_path, monkeypatch):
    from maestrowf.abstracts.enums import CancelCode, JobStatusCode, State, SubmissionCode
    from maestrowf.datastructures.core import StudyStep
    from maestrowf.interfaces.script.fluxscriptadapter import FluxScriptAdapter

    monkeypatch.setenv("FLUX_URI", inst.uri)
    monkeypatch.setattr(sys, "argv", ["maestro"])
    import maestrowf.interfaces.script._flux.flux0_49_0 as iface

    monkeypatch.setattr(iface.FluxInterface_0490, "flux_handle", None)  # a fresh connection
    adapter = FluxScriptAdapter(host="localhost", nodes=1)
    step = StudyStep()
    step.name = "sleeper"
    step.description = "a job to cancel"
    step.run.update({"cmd": "sleep 60", "procs": 1, "nodes": 1, "walltime": "00:02:00",
                     "nested": False})
    scheduled, script, _restart = adapter.write_script(str(tmp_path), step)
    assert scheduled and "#flux: -t 120.0s" in open(script).read()
    rec = adapter.submit(step, script, str(tmp_path))
    assert rec.submission_code == SubmissionCode.OK
    jobid = rec.job_identifier
    assert jobid.startswith("ƒ")

    import flux
    import flux.job

    flux.job.event_wait(flux.Flux(), flux.job.JobID(jobid), "start")
    code, states = adapter.check_jobs([jobid])
    assert code == JobStatusCode.OK and states == {jobid: State.RUNNING}
    cancelled = adapter.cancel_jobs([jobid])
    assert cancelled.cancel_status == CancelCode.OK and cancelled.return_code == 0
    flux.job.event_wait(flux.Flux(), flux.job.JobID(jobid), "clean", raiseJobException=False)
    code, states = adapter.check_jobs([jobid])
    assert states == {jobid: State.CANCELLED}
