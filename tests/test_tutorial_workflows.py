"""The command-line workflows of Flux's tutorials (flux run, submit, bulksubmit, jobs,
job attach/wait/info/last, cancel, watch), run as shell scripts against a real
two-broker instance, with the outputs and exit codes the tutorials show."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

F58 = re.compile(r"^ƒ[1-9A-HJ-NP-Za-km-z]+$")
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def inst():
    from conftest import Instance

    i = Instance(2)
    yield i
    i.stop()


def sh(inst, script: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a bash script as a tutorial reader would, inside the instance."""
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=inst.env, capture_output=True,
                          text=True, timeout=timeout)


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_run_exit_codes_labels_and_options(inst, tmp_path):
    r = sh(inst, "flux run sh -c 'echo hello'", tmp_path)
    assert (r.returncode, r.stdout) == (0, "hello\n")
    r = sh(inst, "flux run /bin/false", tmp_path)
    assert r.returncode == 1
    assert "flux-job: task(s) exited with exit code 1" in r.stderr
    r = sh(inst, "flux run sh -c 'exit 7'", tmp_path)
    assert r.returncode == 7
    r = sh(inst, "flux run -N1 -n1 -c1 hostname", tmp_path)
    assert r.stdout == f"{HOST}\n"
    r = sh(inst, "flux run -n4 --label-io --time-limit=5s --env-remove=LD_LIBRARY_PATH "
                 "sh -c 'echo $FLUX_TASK_RANK'", tmp_path)
    assert r.returncode == 0
    assert sorted(lines(r.stdout)) == ["0: 0", "1: 1", "2: 2", "3: 3"]
    # the time limit ends a job that runs too long
    r = sh(inst, "flux run --time-limit=0.5s sleep 30", tmp_path)
    assert r.returncode != 0 and "resource allocation expired" in r.stderr


def test_submit_attach_last_and_output_files(inst, tmp_path):
    r = sh(inst, 'id=$(flux submit sh -c "echo out; echo err >&2"); '
                 'test "$(flux job last)" = "$id" && echo "$id" && flux job attach $(flux job last)',
           tmp_path)
    out = lines(r.stdout)
    assert r.returncode == 0 and F58.match(out[0]) and out[1:] == ["out"]
    assert r.stderr == "err\n"
    # --out/--err (the tutorial abbreviates --output/--error): both streams in one file
    r = sh(inst, 'flux submit --out deep-dish.txt --err deep-dish.txt '
                 'sh -c \'echo "Order up for $(whoami)!"; echo "extra cheese" >&2\' && '
                 'flux job wait-event $(flux job last) clean', tmp_path)
    assert r.returncode == 0, r.stderr
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    assert sorted(lines((tmp_path / "deep-dish.txt").read_text())) == [
        f"Order up for {me}!", "extra cheese"]
    # a job's R and its info
    r = sh(inst, "id=$(flux submit -N2 -n2 hostname) && flux job wait-event $id clean >/dev/null "
                 "&& flux job info $id R", tmp_path)
    R = json.loads(r.stdout)
    assert R["version"] == 1 and R["execution"]["R_lite"][0]["rank"] == "0-1"


def test_bulksubmit_and_carbon_copies(inst, tmp_path):
    r = sh(inst, "flux bulksubmit --wait echo {} ::: sausage giardiniera mozzarella", tmp_path)
    ids = lines(r.stdout)
    assert r.returncode == 0 and len(ids) == 3 and all(F58.match(i) for i in ids)
    r = sh(inst, "for id in " + " ".join(ids) + "; do flux job attach $id; done", tmp_path)
    assert lines(r.stdout) == ["sausage", "giardiniera", "mozzarella"]

    r = sh(inst, "seq 1 4 | flux bulksubmit --dry-run echo {}", tmp_path)
    assert lines(r.stdout) == [f"bulksubmit: submit echo {i}" for i in range(1, 5)]
    r = sh(inst, "flux bulksubmit --dry-run echo {1} {0} ::: 1 2 ::: 3 4", tmp_path)
    assert lines(r.stdout) == ["bulksubmit: submit echo 3 1", "bulksubmit: submit echo 4 1",
                               "bulksubmit: submit echo 3 2", "bulksubmit: submit echo 4 2"]
    r = sh(inst, "flux bulksubmit --dry-run --cc={1} echo {0} ::: a b ::: 0-1 0-3", tmp_path)
    assert lines(r.stdout) == ["bulksubmit: submit --cc=0-1 echo a",
                               "bulksubmit: submit --cc=0-3 echo a",
                               "bulksubmit: submit --cc=0-1 echo b",
                               "bulksubmit: submit --cc=0-3 echo b"]

    # --watch prints the ids, then each job's output as it arrives
    r = sh(inst, "flux submit --watch --cc=1-4 echo {cc}", tmp_path)
    out = lines(r.stdout)
    assert r.returncode == 0 and all(F58.match(i) for i in out[:4])
    assert sorted(out[4:]) == list("1234")
    # FLUX_JOB_CC in each copy, and {{id}} output files
    r = sh(inst, 'flux submit --wait --cc=1-3 --output=job-{{id}}.out '
                 'sh -c \'echo "This is job $FLUX_JOB_CC"\'', tmp_path)
    assert r.returncode == 0
    files = sorted(tmp_path.glob("job-ƒ*.out"))
    assert {f.name[4:-4] for f in files} == set(lines(r.stdout))
    assert sorted(f.read_text() for f in files) == [f"This is job {i}\n" for i in (1, 2, 3)]
    # a loop over submitted copies, attaching to each (as in the tutorial)
    r = sh(inst, "for jobid in $(flux submit --cc=0-2 sh -c 'echo copy $FLUX_JOB_CC'); "
                 "do flux job attach ${jobid}; done", tmp_path)
    assert lines(r.stdout) == ["copy 0", "copy 1", "copy 2"]


def test_jobs_cancel_and_listing(inst, tmp_path):
    r = sh(inst, "flux submit --nodes=2 --ntasks=2 --cores-per-task=1 --job-name deepdish "
                 "sleep inf && flux submit -N1 -n1 --job-name extracheese sleep inf && "
                 "flux job wait-event $(flux job last) start >/dev/null && flux jobs", tmp_path)
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)[2:]  # after the two job ids
    assert out[0].split() == ["JOBID", "USER", "NAME", "ST", "NTASKS", "NNODES", "TIME", "INFO"]
    mine = [line.split() for line in out[1:] if "deepdish" in line or "extrachee" in line]
    assert len(mine) == 2 and {row[3] for row in mine} <= {"S", "R"}
    r = sh(inst, "flux cancel --all && flux queue drain && flux jobs --no-header", tmp_path)
    assert r.returncode == 0 and r.stdout == ""
    assert "Canceled 2 jobs" in r.stderr
    r = sh(inst, "flux jobs -a -n -o '{name} {status_abbrev} {result}' | head -2", tmp_path)
    assert sorted(lines(r.stdout)) == ["deepdish CA CANCELED", "extracheese CA CANCELED"]
    r = sh(inst, "flux run /bin/false; flux jobs -f failed -n -o '{name} {returncode}' | head -1",
           tmp_path)
    assert lines(r.stdout) == ["false 1"]
    # cancelling an unknown job fails with a message
    r = sh(inst, "flux cancel ƒ1111111", tmp_path)
    assert r.returncode != 0 and r.stderr


def test_waitable_jobs_status_and_watch(inst, tmp_path):
    r = sh(inst, "flux submit --flags=waitable true >/dev/null; "
                 "flux submit --flags=waitable true >/dev/null; flux job wait --all", tmp_path)
    assert r.returncode == 0, r.stderr
    r = sh(inst, "flux submit --flags=waitable sh -c 'exit 3' >/dev/null; flux job wait --all",
           tmp_path)
    assert r.returncode == 1 and "exit code 3" in r.stderr
    r = sh(inst, "id=$(flux submit --flags=waitable true); flux job wait $id && echo ok", tmp_path)
    assert lines(r.stdout) == ["ok"]
    r = sh(inst, "flux job status $(flux submit sh -c 'exit 5')", tmp_path)
    assert r.returncode == 5
    r = sh(inst, "flux submit sh -c 'echo one; sleep 0.2; echo two' >/dev/null && "
                 "flux watch $(flux job last)", tmp_path)
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n")
