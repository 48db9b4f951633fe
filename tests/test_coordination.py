"""Coordination between jobs in sibling child instances: a producer job in one
child and a consumer job in another meet in the root instance (found with
`flux uri /`) through its KVS (put / wait for a key), an event (publish /
subscribe) and an RPC (a service the consumer registers, called by the producer);
the consumer also reads data the producer left in its own job's KVS namespace,
reached through the producer's FLUX_URI and FLUX_KVS_NAMESPACE. No marker files,
no sleeps: every step waits on a KVS key, an event or a response."""

from __future__ import annotations

import json

import pytest

CONSUMER = r'''
import json, os, subprocess, sys
import flux, flux.kvs

def kvs_wait(uri, key, namespace="primary"):
    """A key's value once it exists (flux kvs get --waitcreate)."""
    cmd = ["flux", "kvs", "get", "--waitcreate", "--namespace", namespace, key]
    out = subprocess.check_output(cmd, env=dict(os.environ, FLUX_URI=uri), text=True)
    return json.loads(out)

root = subprocess.check_output(["flux", "uri", "/"], text=True).strip()
h = flux.Flux(root)
h.event_subscribe("coord.go")
h.service_register("coord").get()
P = "primary"  # the root's own namespace, not this job's FLUX_KVS_NAMESPACE
flux.kvs.put(h, "coord.consumer", {"jobid": os.environ["FLUX_JOB_ID"],
                                   "path": os.environ["FLUX_JOB_ID_PATH"]}, namespace=P)
flux.kvs.commit(h, namespace=P)
req = h.request_recv(timeout=60)                       # RPC from the producer
args = req.payload
h.respond(req, {"sum": args["a"] + args["b"]})
ev = h.event_recv("coord.go", timeout=60)              # event from the producer
value = kvs_wait(root, "coord.value")                  # KVS value from the producer
where = kvs_wait(root, "coord.producer")               # the producer's job namespace
result = kvs_wait(where["uri"], "result", where["namespace"])
flux.kvs.put(h, "coord.ack", True, namespace=P)        # the producer may end now
flux.kvs.commit(h, namespace=P)
print(json.dumps({"rpc": [args["a"], args["b"]], "event": ev.payload, "value": value,
                  "result": result, "producer": where}))
'''

PRODUCER = r'''
import json, os, subprocess
import flux, flux.kvs

root_uri = subprocess.check_output(["flux", "uri", "/"], text=True).strip()
env_root = dict(os.environ, FLUX_URI=root_uri, FLUX_KVS_NAMESPACE="primary")
consumer = json.loads(subprocess.check_output(
    ["flux", "kvs", "get", "--waitcreate", "coord.consumer"], env=env_root, text=True))
# data kept in this job's own namespace, in this job's own instance (FLUX_URI)
mine = flux.Flux()
flux.kvs.put(mine, "result", {"answer": 42})           # FLUX_KVS_NAMESPACE=job-<id>
flux.kvs.commit(mine)
h = flux.Flux(root_uri)
resp = h.rpc("coord.add", {"a": 2, "b": 3}).get()      # the consumer's service
h.event_send("coord.go", {"n": 5})
P = "primary"
flux.kvs.put(h, "coord.producer", {"uri": os.environ["FLUX_URI"],
                                   "namespace": os.environ["FLUX_KVS_NAMESPACE"]}, namespace=P)
flux.kvs.put(h, "coord.value", "hello", namespace=P)
flux.kvs.commit(h, namespace=P)
subprocess.check_call(["flux", "kvs", "get", "--waitcreate", "coord.ack"], env=env_root,
                      stdout=subprocess.DEVNULL)
print(json.dumps({"sum": resp["sum"], "consumer": consumer}))
'''


@pytest.fixture
def inst(make_instance):
    return make_instance(1, conf=['resource.config=[{hosts="vm", cores="0-7"}]'])


def run(inst, *args, env=None):
    r = inst.flux(*args, timeout=120, env=env)
    assert r.returncode == 0, f"flux {' '.join(args)}: {r.stderr}"
    return r.stdout.strip()


def test_producer_and_consumer_in_sibling_instances(inst, tmp_path):
    (tmp_path / "consumer.py").write_text(CONSUMER)
    (tmp_path / "producer.py").write_text(PRODUCER)
    a = run(inst, "alloc", "--bg", "-n2")
    b = run(inst, "alloc", "--bg", "-n2")
    env_a = {"FLUX_URI": run(inst, "uri", "--local", a)}
    env_b = {"FLUX_URI": run(inst, "uri", "--local", b)}
    consumer = run(inst, "submit", f"--output={tmp_path}/consumer.out", "python3",
                   str(tmp_path / "consumer.py"), env=env_a)
    producer = run(inst, "submit", f"--output={tmp_path}/producer.out", "python3",
                   str(tmp_path / "producer.py"), env=env_b)
    for jobid, env in ((consumer, env_a), (producer, env_b)):
        run(inst, "job", "wait-event", "-t", "90", jobid, "clean", env=env)
        assert run(inst, "jobs", "-a", "-no", "{result}", jobid, env=env) == "COMPLETED", \
            (tmp_path / "consumer.out").read_text() + (tmp_path / "producer.out").read_text()
    got = json.loads((tmp_path / "consumer.out").read_text())
    sent = json.loads((tmp_path / "producer.out").read_text())
    assert got["rpc"] == [2, 3] and sent["sum"] == 5
    assert got["event"] == {"n": 5}
    assert got["value"] == "hello"
    assert got["result"] == {"answer": 42}
    # the two jobs ran in different instances, siblings under the root
    assert sent["consumer"]["path"] == f"/{a}/{consumer}"
    assert got["producer"]["namespace"].startswith("job-")
    assert got["producer"]["uri"] == env_b["FLUX_URI"]
    # the rendezvous happened in the root's KVS
    assert json.loads(run(inst, "kvs", "get", "coord.value")) == "hello"
    for j in (a, b):
        run(inst, "cancel", j)
