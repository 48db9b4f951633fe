"""Bootstrap from the `[bootstrap]` config table (flux-config-bootstrap(5)).

Every broker reads the same file; it finds its rank as the index of its hostname in
`hosts` (`-Shostname=NAME` or FLUX_FAKE_HOSTNAME override the real hostname, so tests
can run several "hosts" on one machine), binds its `bind` endpoint when it has
children and connects to its parent's `connect` endpoint. The tree is `custom`
(rank 0 the parent of all, unless entries name a `parent`) or `tbon.topo` when
configured. The overlay is secured with `curve_cert`, required above one broker.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping

import attrs
from flux.core.broker.topology import Topology
from flux.core.errors import FluxError
from flux.core.util import hostlist

KEYS = {"curve_cert", "default_port", "default_bind", "default_connect", "hosts", "enable_ipv6"}
HOST_KEYS = {"host", "bind", "connect", "parent"}


def _err(text: str) -> FluxError:
    return FluxError(errno.EINVAL, f"[bootstrap] {text}")


@attrs.define
class HostEntry:
    host: str
    bind: str | None = None
    connect: str | None = None
    parent: str | None = None


def parse_hosts(entries) -> list[HostEntry]:
    """Expand the `hosts` array (each `host` may be an RFC 29 hostlist) in rank order."""
    if not isinstance(entries, list):
        raise _err("hosts must be an array of tables")
    out: list[HostEntry] = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise _err(f"hosts[{i}] must be a table like {{host = \"name\"}}")
        unknown = set(e) - HOST_KEYS
        if unknown:
            raise _err(f"hosts[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        if "host" not in e:
            raise _err(f"hosts[{i}] has no 'host' key")
        for k in HOST_KEYS & set(e):
            if not isinstance(e[k], str) or not e[k]:
                raise _err(f"hosts[{i}].{k} must be a non-empty string")
        try:
            names = hostlist.decode(e["host"])
        except ValueError as exc:
            raise _err(f"hosts[{i}].host: {exc}") from None
        out += [HostEntry(n, e.get("bind"), e.get("connect"), e.get("parent")) for n in names]
    seen: set[str] = set()
    for h in out:
        if h.host in seen:
            raise _err(f"host {h.host} appears more than once in hosts")
        seen.add(h.host)
    return out


def _subst(uri: str, host: str, port, what: str) -> str:
    if "%p" in uri:
        if port is None:
            raise _err(f"{what} '{uri}' uses %p but default_port is not set")
        uri = uri.replace("%p", str(port))
    return uri.replace("%h", host)


def my_hostname(attrs_: Mapping[str, str], environ: Mapping[str, str]) -> str:
    return attrs_.get("hostname") or environ.get("FLUX_FAKE_HOSTNAME") or socket.gethostname()


def find_rank(hosts: list[HostEntry], name: str) -> int:
    names = [h.host for h in hosts]
    if name in names:
        return names.index(name)
    short = name.split(".", 1)[0]
    if short in names:
        return names.index(short)
    raise FluxError(errno.ENOENT, f"[bootstrap] hostname '{name}' is not in hosts "
                                  f"({hostlist.encode(names)}); set -Shostname=NAME to choose one")


def load_curve(conf: Mapping, attrs_: Mapping[str, str]) -> dict | None:
    """Keys from `[bootstrap] curve_cert`, if configured (checked: owner-only file).

    One certificate is shared by every broker: it is each parent's server key and the
    only client key a parent's ZAP handler admits."""
    from flux.core.security import curve

    bs = conf.get("bootstrap")
    path = bs.get("curve_cert") if isinstance(bs, Mapping) else None
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        raise _err("curve_cert must be a file path")
    owner = int(attrs_.get("security.owner", os.getuid()))
    cert = curve.load(path, owner=owner)
    return {"public": cert.public, "secret": cert.secret, "server_public": cert.public,
            "allowed": frozenset([cert.public]), "name": cert.name}


class ConfigBootstrap:
    """broker.boot-method `config`: rank, size, endpoints and keys from `[bootstrap]`."""

    method = "config"

    def __init__(self, conf: Mapping, attrs_: Mapping[str, str],
                 environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.parents: list[int | None] | None = None
        self.ipv6 = False
        self.attrs: dict[str, str] = {"broker.boot-method": "config"}
        bs = conf["bootstrap"]
        unknown = set(bs) - KEYS
        if unknown:
            raise _err(f"unknown key(s) {', '.join(sorted(unknown))}")
        port = bs.get("default_port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                                 or not 0 < port < 65536):
            raise _err(f"default_port must be a TCP port number, not {port!r}")
        for k in ("default_bind", "default_connect"):
            if k in bs and (not isinstance(bs[k], str) or not bs[k]):
                raise _err(f"{k} must be a ZeroMQ endpoint URI string")
        self.ipv6 = bs.get("enable_ipv6", False)
        if not isinstance(self.ipv6, bool):
            raise _err("enable_ipv6 must be true or false")
        hosts = parse_hosts(bs.get("hosts", []))
        if not hosts:  # no hosts: a standalone broker
            self.rank, self.size = 0, 1
            self.curve = load_curve(conf, attrs_)
            return
        self.size = size = len(hosts)
        self.rank = rank = find_rank(hosts, my_hostname(attrs_, environ))

        index = {h.host: r for r, h in enumerate(hosts)}
        if any(h.parent for h in hosts):
            self.parents = []
            for r, h in enumerate(hosts):
                if h.parent is None:
                    self.parents.append(None if r == 0 else 0)
                elif h.parent not in index:
                    raise _err(f"host {h.host}: parent {h.parent} is not in hosts")
                else:
                    self.parents.append(index[h.parent])
        spec = str(attrs_.get("tbon.topo") or (conf.get("tbon") or {}).get("topo") or "custom")
        if self.parents is not None and spec != "custom":
            raise _err(f"hosts name a parent but tbon.topo is '{spec}' (parents need 'custom')")
        try:
            topo = Topology.parse(spec, size, self.parents)
        except FluxError as exc:
            raise _err(f"tree shape: {exc.strerror}") from None

        me = hosts[rank]
        a = self.attrs
        a.update({"hostname": me.host, "hostlist": hostlist.encode([h.host for h in hosts]),
                  "tbon.topo": spec})
        if topo.children(rank):
            bind = me.bind or bs.get("default_bind")
            if not bind:
                raise _err(f"host {me.host} has children but no bind endpoint "
                           "(set its 'bind' or default_bind)")
            a["tbon.endpoint"] = _subst(bind, me.host, port, f"host {me.host} bind")
        parent = topo.parent(rank)
        if parent is not None:
            up = hosts[parent]
            connect = up.connect or bs.get("default_connect")
            if not connect:
                raise _err(f"host {up.host} (parent of {me.host}) has no connect endpoint "
                           "(set its 'connect' or default_connect)")
            a["tbon.parent-endpoint"] = _subst(connect, up.host, port, f"host {up.host} connect")
        self.curve = load_curve(conf, attrs_)
        if self.curve is None and size > 1:
            raise _err("curve_cert is required for an instance of more than one broker "
                       "(make one with `flux keygen PATH`)")
