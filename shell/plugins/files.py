"""files: unpack the jobspec's file archive into the job's `{{tmpdir}}` (RFC 37).

`attributes.system.files` maps a name to `{data, encoding?, mode?}`: `utf-8` or
`base64` text, or (no encoding) a JSON value written as JSON. `flux batch` keeps
its script there as `script` (mode 0700) and `--conf` as `conf.json`; `--add-file`
adds others. Names are relative paths inside the tmpdir: `..` and absolute names
are refused. A file that cannot be written fails the job with the reason.
"""

from __future__ import annotations

import base64
import json
import os
import stat

from flux.core.hookspecs import hookimpl


def _content(name: str, entry: dict) -> bytes:
    data = entry.get("data")
    enc = entry.get("encoding")
    if enc == "base64":
        return base64.b64decode(data)
    if enc == "utf-8":
        return str(data).encode()
    if enc is None:
        return json.dumps(data).encode()
    raise ValueError(f"files.{name}: unknown encoding {enc!r}")


def unpack(files: dict, tmpdir: str) -> None:
    for name, entry in files.items():
        if not isinstance(entry, dict):
            raise ValueError(f"files.{name} must be an object")
        if os.path.isabs(name) or ".." in name.split("/"):
            raise ValueError(f"files.{name}: the name must be a relative path inside the tmpdir")
        path = os.path.join(tmpdir, name)
        mode = stat.S_IMODE(entry.get("mode", 0o600)) or 0o600
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, _content(name, entry))
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


@hookimpl
def shell_init(shell):
    files = (shell.jobspec.get("attributes", {}).get("system") or {}).get("files")
    if not files:
        return
    if not isinstance(files, dict):
        raise ValueError("attributes.system.files must be an object")
    if not shell.tmpdir:
        raise ValueError("files: the job has no tmpdir to unpack its files into")
    try:
        unpack(files, shell.tmpdir)
    except OSError as exc:
        raise ValueError(f"files: {exc.filename or ''}: {exc.strerror}") from None
