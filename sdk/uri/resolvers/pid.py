"""`pid:PID`: the URI of the instance a local process runs in (its FLUX_URI). For a
broker, whose own FLUX_URI names its parent, a child process of it is asked."""

from __future__ import annotations

import os

from flux.uri.uri import URIResolverPlugin, URIResolverURI


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fp:
            data = fp.read()
    except FileNotFoundError:
        raise ValueError(f"PID {pid} not found") from None
    except PermissionError:
        raise ValueError(f"PID {pid}: permission denied") from None
    env = {}
    for item in data.split(b"\0"):
        k, eq, v = item.partition(b"=")
        if eq:
            env[os.fsdecode(k)] = os.fsdecode(v)
    return env


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fp:
            return [os.fsdecode(a) for a in fp.read().split(b"\0") if a]
    except OSError:
        return []


def _is_broker(pid: int) -> bool:
    argv = _argv(pid)
    return "flux.core.broker.main" in argv or any(
        os.path.basename(a) == "flux" and argv[i + 1:i + 2] in (["broker"], ["start"])
        for i, a in enumerate(argv[:3]))


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fp:
                out.extend(int(x) for x in fp.read().split())
    except OSError:
        pass
    return out


def _listening_socket(pid: int) -> str | None:
    """The broker's own `local-N` socket, from its descriptors and /proc/net/unix."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open("/proc/net/unix") as fp:
            next(fp)
            for line in fp:
                parts = line.split()
                if len(parts) >= 8 and parts[6] in inodes and \
                        os.path.basename(parts[7]).startswith("local-"):
                    return parts[7]
    except OSError:
        return None
    return None


class URIResolver(URIResolverPlugin):
    def describe(self) -> str:
        return "Get FLUX_URI for a given local PID"

    def resolve(self, uri: URIResolverURI) -> str:
        try:
            pid = int(uri.path)
        except ValueError:
            raise ValueError(f"PID must be an integer, not '{uri.path}'") from None
        if _is_broker(pid):
            path = _listening_socket(pid)
            if path:
                return f"local://{path}"
            own = _environ(pid).get("FLUX_URI")  # the broker's parent, if any
            for child in _children(pid):
                argv = _argv(child)
                if "--uri" in argv[:-1]:  # its job shell server names it
                    return argv[argv.index("--uri") + 1]
                uri = _environ(child).get("FLUX_URI")
                if uri and uri != own:
                    return uri
            raise ValueError(f"PID {pid} is a broker with no child process to ask")
        env = _environ(pid)
        if "FLUX_URI" not in env:
            raise ValueError(f"PID {pid} is not running in a Flux instance (no FLUX_URI)")
        return env["FLUX_URI"]
