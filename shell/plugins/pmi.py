"""pmi: serve PMI-1 (the simple wire protocol) to the tasks, so MPI programs and
nested Flux brokers can bootstrap (flux-shell(1) `pmi` option, SPEC 7.4).

Shell option `pmi` is a comma-separated list of methods: `simple` (the default;
`pmi1` and `pmi2` are accepted as its aliases) or `off`. Each task gets one end of
a socketpair as PMI_FD, with PMI_RANK, PMI_SIZE and PMI_SPAWNED=0. Preloaded keys:
PMI_process_mapping (unless `pmi-simple.nomap`), flux.taskmap and
flux.instance-level. `pmi-simple.exchange.k` is accepted for compatibility; the
exchange here is always one round trip to the leader shell.
"""

from __future__ import annotations

import errno
import json
import socket

from flux.core.hookspecs import hookimpl

SIMPLE = {"simple", "pmi1", "pmi2"}
OFF = {"off", "none"}


def _opt(shell, dotted: str, default=None):
    """An option given nested ({"pmi-simple": {"nomap": 1}}) or flat ("pmi-simple.nomap")."""
    if dotted in shell.options:
        return shell.options[dotted]
    cur = shell.options
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def methods(value) -> list[str]:
    if value is None:
        return ["simple"]
    if isinstance(value, (list, tuple)):
        names = [str(v) for v in value]
    elif isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    else:
        raise ValueError(f"shell option pmi must be a string like 'simple' or 'off', "
                         f"not {value!r}")
    return names


class TaskConn:
    """The shell's end of one task's PMI socket, driven by the event loop."""

    __slots__ = ("state", "sock", "client", "outbuf", "writing", "closed")

    def __init__(self, state, sock: socket.socket, rank: int):
        from flux.shell.pmi.simple import Client

        self.state = state
        self.sock = sock
        self.client = Client(rank, self.send)
        self.outbuf = bytearray()
        self.writing = False
        self.closed = False

    def start(self, loop) -> None:
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self.readable)

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            self.state.server.feed(self.client, data)
        except Exception as exc:  # noqa: BLE001 - one bad client must not hurt the shell
            self.state.shell.warn(f"pmi: task {self.client.rank}: {exc!r}; connection closed")
            self.close()

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.writing:
            try:
                n = self.sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                self.close()
                return
            if n == len(data):
                return
            data = data[n:]
            self.writing = True
            self.state.loop.add_writer(self.sock.fileno(), self.writable)
        self.outbuf += data

    def writable(self) -> None:
        try:
            n = self.sock.send(self.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.outbuf[:n]
        if not self.outbuf:
            self.writing = False
            self.state.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.state.loop
        loop.remove_reader(self.sock.fileno())
        if self.writing:
            loop.remove_writer(self.sock.fileno())
        self.sock.close()


class PMIState:
    def __init__(self, shell, server):
        self.shell = shell
        self.server = server
        self.loop = shell.loop
        self.socks: dict[int, tuple[socket.socket, socket.socket]] = {}  # rank -> (ours, task's)
        self.conns: list[TaskConn] = []

    def close(self) -> None:
        for ours, theirs in self.socks.values():
            ours.close()
            theirs.close()
        self.socks.clear()
        for c in self.conns:
            c.close()
        self.conns.clear()


@hookimpl
def shell_init(shell):
    names = methods(shell.getopt("pmi"))
    if any(n in OFF for n in names):
        return
    for n in names:
        if n not in SIMPLE:
            shell.warn(f"pmi: method '{n}' is not provided here (known: simple, off)")
    if not any(n in SIMPLE for n in names):
        return
    from flux.shell.pmi.exchange import Exchange
    from flux.shell.pmi.simple import SimpleServer

    info = shell.info
    jobid_path = getattr(shell.host, "jobid_path", "/") or "/"
    level = len([p for p in jobid_path.split("/") if p])
    preload = {"flux.instance-level": str(level + 1),
               "flux.taskmap": json.dumps(info.taskmap.to_list(), separators=(",", ":"))}
    if not _opt(shell, "pmi-simple.nomap"):
        preload["PMI_process_mapping"] = info.taskmap.encode("pmi")
    state = None

    def on_abort(client, code: int, msg: str) -> None:
        note = f"task {client.rank}: PMI abort with exit code {code}"
        if msg:
            note += f": {msg}"
        shell.die(code or 1, note)

    trace = None
    if _opt(shell, "verbose", 0) and int(_opt(shell, "verbose", 0)) >= 2:
        trace = shell.log_local
    ex = Exchange(shell)

    async def exchange(local: dict) -> dict:
        try:
            return await ex(local)
        except Exception as exc:
            # the other shells wait for us forever otherwise: the job cannot go on
            shell.die(1, f"pmi: barrier exchange with the leader shell failed: {exc}")
            raise

    server = SimpleServer(shell.jobid_f58, size=info.ntasks, nlocal=len(shell.tasks),
                          exchange=exchange, preload=preload, on_abort=on_abort,
                          trace=trace)
    state = PMIState(shell, server)
    shell.aux["pmi"] = state
    shell.setenv("PMI_SIZE", str(info.ntasks))
    shell.setenv("PMI_SPAWNED", "0")


@hookimpl
def task_init(shell, task):
    state = shell.aux.get("pmi")
    if state is None:
        return
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(exc.errno or errno.EMFILE, f"pmi: socketpair: {exc.strerror}") from None
    state.socks[task.rank] = (ours, theirs)
    task.setenv("PMI_FD", str(task.pass_fd(theirs.fileno())))
    task.setenv("PMI_RANK", str(task.rank))


@hookimpl
def task_fork(shell, task):
    state = shell.aux.get("pmi")
    if state is None:
        return
    pair = state.socks.pop(task.rank, None)
    if pair is None:
        return
    ours, theirs = pair
    theirs.close()  # the task has its copy
    conn = TaskConn(state, ours, task.rank)
    state.conns.append(conn)
    task.aux["pmi"] = conn.client
    conn.start(state.loop)


@hookimpl
def task_exit(shell, task):
    # a task that failed between PMI init and finalize leaves its peers waiting in a
    # barrier that can never complete (a broker whose bootstrap failed, an MPI rank
    # that crashed in MPI_Init): fail the job now rather than hang it
    client = task.aux.get("pmi")
    if (client is not None and client.initialized and not client.finalized
            and task.exitcode != 0 and shell.fatal_code is None):
        shell.die(task.exitcode, f"task {task.rank}: exited with code {task.exitcode} "
                                 f"between PMI init and finalize")


@hookimpl
def shell_exit(shell):
    state = shell.aux.pop("pmi", None)
    if state is not None:
        state.close()
