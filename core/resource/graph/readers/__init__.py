"""Resource readers (entry-point group `flux.resource_reader`): each is a callable
`read(data) -> ResourceGraph`. `data` is a dict, a text document, or a path to a file.

- `hwloc` / `local`: this machine (affinity, sysfs, nvidia-smi); data: {} or {"rank", "hostname"}
- `rv1`: R version 1; rebuilds exactly the JGF under `scheduling` when present
- `jgf`: JSON Graph Format (RFC 40)
- `toml` / `yaml`: a modeled cluster description (see docs/plugins/resource_reader.md)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def source(data: Any, what: str, parse: Callable[[str], Any]) -> Any:
    """A dict as is; a path's contents or a text document parsed with `parse`.
    ValueError naming the file and the problem otherwise."""
    if isinstance(data, dict):
        return data
    if isinstance(data, bytes):
        data = data.decode()
    where = what
    if isinstance(data, os.PathLike) or (isinstance(data, str) and "\n" not in data
                                          and not data.lstrip().startswith(("{", "["))
                                          and "=" not in data and ":" not in data):
        p = Path(data)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {what} file {str(p)!r}: {exc.strerror or exc}") from None
        where = f"{what} file {str(p)!r}"
    elif isinstance(data, str):
        text = data
    else:
        raise ValueError(f"{what}: expected a dict, a document or a path, not {type(data).__name__}")
    try:
        out = parse(text)
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; name the problem
        raise ValueError(f"{where} is not valid: {exc}") from None
    if not isinstance(out, dict):
        raise ValueError(f"{where} must hold an object/table at the top, not {type(out).__name__}")
    return out


def parse_json(text: str) -> Any:
    return json.loads(text)
