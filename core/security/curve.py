"""ZeroMQ CURVE certificates for the overlay (`flux keygen`, `[bootstrap] curve_cert`).

A certificate is a ZPL text file (the format czmq and pyzmq write) holding a
`metadata` section and a `curve` section with the Z85 `public-key` and
`secret-key`. Every broker of a system instance holds the same one: it is both the
server key of each parent and the only client key a parent accepts.
"""

from __future__ import annotations

import datetime
import errno
import os
import socket
import stat

import attrs
import zmq
from flux.core.errors import FluxError

Z85_KEY_LEN = 40  # a 32-byte curve25519 key in Z85


@attrs.define
class CurveCert:
    public: bytes  # Z85
    secret: bytes | None  # Z85; None for a public-only certificate
    metadata: dict[str, str] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")


def generate(name: str | None = None, meta: dict[str, str] | None = None) -> CurveCert:
    """A new key pair with Flux's metadata (name defaults to the hostname)."""
    public, secret = zmq.curve_keypair()
    host = socket.gethostname()
    md = dict(meta or {})
    md["name"] = name or md.get("name") or host
    md.setdefault("keygen.hostname", host)
    md.setdefault("keygen.time", datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"))
    md.setdefault("keygen.userid", str(os.getuid()))
    md.setdefault("keygen.zmq-version", zmq.zmq_version())
    md.setdefault("keygen.pyzmq-version", zmq.pyzmq_version())
    return CurveCert(public, secret, md)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dumps(cert: CurveCert) -> str:
    lines = [
        f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M:%S} by flux keygen  ****",
        "#   ZeroMQ CURVE **Secret** Certificate",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.",
        "",
        "metadata",
    ]
    lines += [f"    {k} = {_quote(str(v))}" for k, v in cert.metadata.items()]
    lines.append("curve")
    lines.append(f"    public-key = {_quote(cert.public.decode())}")
    if cert.secret is not None:
        lines.append(f"    secret-key = {_quote(cert.secret.decode())}")
    return "\n".join(lines) + "\n"


def save(cert: CurveCert, path: str) -> None:
    """Write the certificate readable only by its owner; never replace an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise FluxError(exc.errno or errno.EIO, f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(dumps(cert))


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return v


def loads(text: str, where: str = "certificate") -> CurveCert:
    section = None
    md: dict[str, str] = {}
    keys: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()  # no trailing comments: '#' is a Z85 character
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            section = line.strip()
            continue
        if "=" not in line:
            raise FluxError(errno.EINVAL, f"{where}: line {n}: expected 'key = value'")
        k, _, v = line.strip().partition("=")
        (md if section == "metadata" else keys if section == "curve" else {})[k.strip()] = _unquote(v)
    public = keys.get("public-key")
    secret = keys.get("secret-key")
    for what, key in (("public-key", public), ("secret-key", secret)):
        if key is not None and len(key) != Z85_KEY_LEN:
            raise FluxError(errno.EINVAL, f"{where}: {what} is not a {Z85_KEY_LEN}-character Z85 key")
    if public is None:
        raise FluxError(errno.EINVAL, f"{where}: no curve public-key")
    return CurveCert(public.encode(), secret.encode() if secret else None, md)


def load(path: str, owner: int | None = None) -> CurveCert:
    """Load a secret certificate for the overlay, refusing one others could read.

    `owner` (the instance owner's uid) must own the file when given."""
    try:
        st = os.stat(path)
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise FluxError(exc.errno or errno.ENOENT, f"curve_cert {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FluxError(errno.EINVAL, f"curve_cert {path}: not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FluxError(errno.EPERM, f"curve_cert {path}: readable or writable by group/other "
                                     f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if owner is not None and st.st_uid != owner:
        raise FluxError(errno.EPERM, f"curve_cert {path}: owned by uid {st.st_uid}, "
                                     f"not by the instance owner (uid {owner})")
    cert = loads(text, f"curve_cert {path}")
    if cert.secret is None:
        raise FluxError(errno.EINVAL, f"curve_cert {path}: no secret-key (a public certificate "
                                      "cannot secure the overlay)")
    return cert
