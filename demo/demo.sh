#!/bin/sh
# A tour of what the project can do so far, on this machine: a 7-broker instance
# (a 3-level tree), remote execution, events, and the KVS shared by every rank.
set -eu
echo "== starting a 7-broker instance (tree fanout 2, fake hosts node[0-6])"
exec flux start --test-size=7 --test-hosts='node[0-6]' sh -eu -c '
echo "== instance: size $(flux getattr size), uri $FLUX_URI"
flux overlay status
echo
echo "== flux ping to the deepest rank (6)"
flux ping -c 3 -i 0.05 6
echo
echo "== flux exec on every rank (each asks its own broker for its rank and host)"
flux exec -l -r all sh -c "echo rank \$(flux getattr rank) on \$(flux getattr hostname)" | sort -n
echo
echo "== KVS: every rank writes a key, rank 0 reads them back"
flux exec -r all sh -c "flux kvs put demo.rank\$(flux getattr rank)=\$(flux getattr hostname)"
flux kvs dir -R demo
echo
echo "== KVS: an atomic multi-key transaction, a JSON value, and a watch"
flux kvs put demo.config.nodes=7 demo.config.policy=fcfs
flux kvs get demo.config.nodes demo.config.policy
flux kvs put demo.counter=0
( flux kvs get --watch --count=3 demo.counter | sed "s/^/  watch saw: /" ) &
watcher=$!
flux kvs wait $(( $(flux kvs version) ))
for i in 1 2; do flux kvs put demo.counter=$i; done
wait $watcher
echo
echo "== events: rank 5 publishes, rank 0 receives"
( flux event sub --count=1 demo.hello ) &
sub=$!
flux exec -r 0 true   # the subscription is in place once the RPC above returned
flux exec -r 5 flux event pub demo.hello "{\"from\": 5}"
wait $sub
echo
echo "== jobs: a 7-node job, its output labelled by task rank"
flux run -N7 -n7 --label-io sh -c "echo task \$FLUX_TASK_RANK of \$FLUX_JOB_SIZE on \$(hostname -s)" | sort -n
echo
echo "== jobs: 200 jobs submitted at once (--cc), then the queue drained"
t0=$(date +%s.%N)
flux submit --quiet --cc=1-200 --setattr=system.exec.test.run_duration=0.001s true
flux queue drain
t1=$(date +%s.%N)
echo "  200 jobs (test exec) in $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
flux jobs -a --stats-only || true  # (exits 1 when no job is active, as in Flux)
echo
echo "== jobs: bulksubmit with substitution, a failing job, flux jobs"
flux bulksubmit --quiet --watch echo hello {} ::: alice bob
flux submit --quiet sh -c "exit 3" >/dev/null
flux queue drain
flux jobs -a -o "{id.f58:>12} {name:<8} {status_abbrev:>2} {returncode:>3} {runtime!F:>8}" | head -n 4
echo
echo "== Python: FluxExecutor runs 5 jobs, futures give their exit codes"
python3 - <<"PY"
from flux.job import FluxExecutor, JobspecV1
with FluxExecutor() as ex:
    futs = [ex.submit(JobspecV1.from_command(["sh", "-c", f"exit {i % 2}"])) for i in range(5)]
    print("  exit codes:", [f.result() for f in futs])
PY
echo
echo "== broker log (last lines)"
flux dmesg | tail -n 4
echo
echo "== installed plugins"
flux plugins list
'
