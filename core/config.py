"""Instance configuration: TOML files, a config directory, and `KEY=VAL` overrides."""

from __future__ import annotations

import errno
import json
import os
import tomllib
from collections.abc import Callable
from typing import Any

from flux.core.errors import FluxError


def parsed_once(parse: Callable[[dict], Any], error: type[Exception]) -> Callable[[dict], Any]:
    """Wrap `parse(config)` so it runs once per configuration object (a broker's config
    is fixed while it runs; plugins' hooks ask for it on every job). An `error` it
    raised is kept and raised again on every call, so each job gets the reason."""
    cache: list = [None, None]  # [config, result or error]

    def get(config: dict) -> Any:
        if cache[0] is not config:
            try:
                cache[1] = parse(config)
            except error as exc:
                cache[1] = exc
            cache[0] = config
        if isinstance(cache[1], error):
            raise cache[1]
        return cache[1]

    return get


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text


def set_dotted(conf: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise FluxError(errno.EINVAL, f"invalid config key '{key}'")
    d = conf
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise FluxError(errno.EINVAL, f"config key '{key}': '{p}' is not a table")
        d = nxt
    d[parts[-1]] = value


def merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def load_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FluxError(exc.errno or errno.ENOENT, f"config file {path}: {exc.strerror}") from None
    try:
        if path.endswith(".json"):
            conf = json.loads(data)
        else:
            conf = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FluxError(errno.EINVAL, f"config file {path}: {exc}") from None
    if not isinstance(conf, dict):
        raise FluxError(errno.EINVAL, f"config file {path}: top level must be a table")
    return conf


def load_dir(path: str) -> dict:
    if not os.path.isdir(path):
        raise FluxError(errno.ENOENT, f"config directory {path} does not exist")
    conf: dict = {}
    for name in sorted(os.listdir(path)):
        if name.endswith((".toml", ".json")):
            merge(conf, load_file(os.path.join(path, name)))
    return conf


def apply_conf_arg(conf: dict, arg: str) -> None:
    """`--conf` accepts KEY=VAL (value as TOML/JSON) or a TOML/JSON file path."""
    if "=" in arg and not os.path.exists(arg):
        key, _, val = arg.partition("=")
        set_dotted(conf, key.strip(), _parse_value(val.strip()))
    else:
        merge(conf, load_file(arg))
