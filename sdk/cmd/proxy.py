"""`flux proxy [-f] [-n] [--reconnect] TARGET [COMMAND...]`: run COMMAND (default
$SHELL) connected to another instance (SPEC 6.6).

TARGET is resolved as by `flux uri` (a job id, a path of them, `pid:`, a URI). The
proxy listens on a socket of its own and gives COMMAND `FLUX_URI=local://<it>`;
each client connection is relayed byte for byte to the target (so the target sees
this user's credentials, as with ssh). For an ssh:// target on another host,
`FLUX_PROXY_REMOTE` names that host. If the target goes away, COMMAND gets
SIGHUP and SIGCONT (not with `-n`), unless `--reconnect` retries every 2 s.
The exit code is COMMAND's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile

PROG = "flux-proxy"
RECONNECT_PERIOD = 2.0


def _die(msg: str) -> int:
    sys.stderr.write(f"{PROG}: {msg}\n")
    return 1


class Upstream:
    """Opens byte streams to the target: a socket, or an ssh relay process."""

    def __init__(self, uri: str):
        from flux.connect import parse_ssh, socket_path

        self.uri = uri
        self.path = socket_path(uri)
        self.ssh = None if self.path is not None else parse_ssh(uri)

    async def open(self):
        """(reader, writer, process or None)."""
        if self.path is not None:
            r, w = await asyncio.open_unix_connection(self.path)
            return r, w, None
        import shlex

        user, host, port, path = self.ssh
        cmd = shlex.split(os.environ.get("FLUX_SSH") or "ssh")
        if port:
            cmd += ["-p", str(port)]
        cmd += [f"{user}@{host}" if user else host,
                *shlex.split(os.environ.get("FLUX_SSH_RCMD") or "flux"), "relay", path]
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
        return proc.stdout, proc.stdin, proc


async def _pump(reader, writer) -> None:
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


class Proxy:
    def __init__(self, upstream: Upstream, args, command: list[str], env: dict):
        self.up = upstream
        self.args = args
        self.command = command
        self.env = env
        self.child: asyncio.subprocess.Process | None = None
        self.connected = True
        self.clients: set[asyncio.Task] = set()

    async def client(self, reader, writer) -> None:
        if not self.connected:
            writer.close()
            return
        try:
            ur, uw, proc = await self.up.open()
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pump(reader, uw), _pump(ur, writer))
        finally:
            for w in (writer, uw):
                try:
                    w.close()
                except (ConnectionError, OSError, RuntimeError):
                    pass
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()

    async def monitor(self) -> None:
        """Hold a connection to the target; react when it closes."""
        while True:
            try:
                r, w, proc = await self.up.open()
                first = await r.read(1)
                if not first:
                    raise ConnectionError
                self.connected = True
                await r.read()  # returns at EOF: the target is gone
                w.close()
                if proc is not None and proc.returncode is None:
                    proc.terminate()
            except (ConnectionError, OSError):
                pass
            if self.connected:
                self.connected = False
                sys.stderr.write(f"{PROG}: Lost connection to Flux\n")
                if not self.args.nohup and self.child and self.child.returncode is None:
                    for sig in (signal.SIGHUP, signal.SIGCONT):
                        try:
                            self.child.send_signal(sig)
                        except ProcessLookupError:
                            pass
            if not self.args.reconnect:
                return
            await asyncio.sleep(RECONNECT_PERIOD)

    async def run(self, sockpath: str) -> int:
        server = await asyncio.start_unix_server(self.client, path=sockpath)
        monitor = asyncio.ensure_future(self.monitor())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGQUIT):  # the terminal's keys are for COMMAND
            loop.add_signal_handler(sig, lambda: None)
        try:
            self.child = await asyncio.create_subprocess_exec(*self.command, env=self.env)
        except OSError as exc:
            server.close()
            monitor.cancel()
            _die(f"{self.command[0]}: {exc.strerror}")
            return 127 if isinstance(exc, FileNotFoundError) else 126
        rc = await self.child.wait()
        server.close()
        monitor.cancel()
        return 128 - rc if rc < 0 else rc


def main(argv: list[str]) -> int:
    from flux.cmd.util import Parser

    p = Parser("flux proxy", usage="flux proxy [OPTIONS] TARGET [COMMAND...]",
               description="Run COMMAND (default: a shell) connected to the instance TARGET")
    p.add_argument("-f", "--force", action="store_true",
                   help="Connect even to an instance owned by another user")
    p.add_argument("-n", "--nohup", action="store_true",
                   help="Do not send SIGHUP to COMMAND when the connection is lost")
    p.add_argument("--reconnect", action="store_true",
                   help="Try to reconnect every 2 s when the connection is lost")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("command", nargs="...", metavar="COMMAND")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    import flux
    from flux.connect import is_local_host, parse_ssh
    from flux.uri import FluxURIResolver

    try:
        uri = str(FluxURIResolver().resolve(args.target))
        h = flux.Flux(uri)
        try:
            owner = int(h.attr_get("security.owner"))
        finally:
            h.close()
        up = Upstream(uri)
    except (ValueError, NotImplementedError) as exc:
        return _die(str(exc))
    except OSError as exc:
        return _die(f"{args.target}: {exc.strerror or exc}")
    if owner != os.getuid() and not args.force:
        return _die(f"{args.target} is owned by user {owner}: use -f to connect anyway")
    tmpdir = tempfile.mkdtemp(prefix="flux-proxy-")
    sockpath = os.path.join(tmpdir, "local")
    env = dict(os.environ, FLUX_URI=f"local://{sockpath}")
    env.pop("FLUX_PROXY_REMOTE", None)
    if uri.startswith("ssh://"):
        host = parse_ssh(uri)[1]
        if not is_local_host(host):
            env["FLUX_PROXY_REMOTE"] = host
    if not command:
        command = [os.environ.get("SHELL", "/bin/sh")]
    try:
        return asyncio.run(Proxy(up, args, command, env).run(sockpath))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
