"""How a client reaches a broker from a URI (SPEC 6.6).

- `local://PATH` (or a bare path): the broker's UNIX socket.
- `ssh://[USER@]HOST[:PORT]/PATH`: when HOST is this machine (its name, FQDN,
  `localhost` or a loopback address) the socket is opened directly, as the same
  user on the same host would get through ssh; otherwise `$FLUX_SSH` (default
  `ssh`) runs `$FLUX_SSH_RCMD` (default `flux`) `relay PATH` on HOST, and the
  handle talks through its stdin/stdout.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import subprocess
from urllib.parse import urlparse

from flux.core.errors import FluxError


def _local_names() -> set[str]:
    names = {"localhost", "::1", socket.gethostname(), os.uname().nodename}
    return names | {n.split(".")[0] for n in list(names)}


def parse_ssh(url: str) -> tuple[str | None, str, int | None, str]:
    """(user, host, port, path) of an ssh:// URI."""
    u = urlparse(url)
    if not u.hostname or not u.path:
        raise FluxError(errno.EINVAL, f"invalid ssh URI '{url}' (ssh://[user@]host[:port]/path)")
    return u.username, u.hostname, u.port, u.path


def is_local_host(host: str) -> bool:
    """This machine by name (short or qualified) or loopback address; no DNS lookup."""
    names = _local_names()
    return host in names or host.split(".")[0] in names or host.startswith("127.")


def socket_path(url: str) -> str | None:
    """The UNIX socket to open for `url`, or None when it takes an ssh relay."""
    if url.startswith("local://"):
        return url[len("local://"):]
    if url.startswith("ssh://"):
        _user, host, _port, path = parse_ssh(url)
        return path if is_local_host(host) else None
    if "://" not in url:
        return url
    scheme = url.split("://", 1)[0]
    raise FluxError(errno.EINVAL, f"unsupported URI scheme '{scheme}' in '{url}' "
                                  "(local:// and ssh:// are supported)")


def ssh_relay(url: str) -> tuple[socket.socket, subprocess.Popen]:
    """A socket whose other end is `ssh HOST flux relay PATH`."""
    user, host, port, path = parse_ssh(url)
    ssh = shlex.split(os.environ.get("FLUX_SSH") or "ssh")
    rcmd = shlex.split(os.environ.get("FLUX_SSH_RCMD") or "flux")
    cmd = list(ssh)
    if port:
        cmd += ["-p", str(port)]
    cmd += [f"{user}@{host}" if user else host, *rcmd, "relay", path]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(cmd, stdin=theirs, stdout=theirs, start_new_session=True)
    except OSError as exc:
        ours.close()
        raise FluxError(exc.errno or errno.ENOENT, f"cannot run {cmd[0]}: {exc.strerror}") from None
    finally:
        theirs.close()
    return ours, proc
