"""Per-user configuration of Flux tools: named output formats (`flux-jobs.toml` ...).

`UtilConfig(name)` reads `<name>.toml`, `<name>.yaml` or `<name>.json` from each
`$XDG_CONFIG_DIRS/flux` (default /etc/xdg/flux) and then `$XDG_CONFIG_HOME/flux`
(default ~/.config/flux); later files override earlier ones, and files may only add
formats (`[formats.NAME] format = "...", description = "..."`), never replace the
built-in ones. `FLUX_<TOOL>_FORMAT_DEFAULT` names the format used for `default`.
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

__all__ = ["UtilConfig"]


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


class UtilConfig:
    """Configuration of tool `name` (`toolname` is used in error messages and the env var)."""

    builtin_formats: dict[str, dict] = {}

    def __init__(self, name: str, toolname: str | None = None, subcommand: str | None = None,
                 initial_dict: dict | None = None):
        self.name = name
        self.toolname = toolname or name
        self.subcommand = subcommand
        self.config: dict[str, Any] = {}
        if initial_dict:
            _merge(self.config, json.loads(json.dumps(initial_dict)))

    # -------------------------------------------------------------- loading
    def _paths(self) -> list[str]:
        dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        bases = [d for d in reversed(dirs.split(":")) if d] + [home]
        out = []
        for base in bases:
            for ext in ("toml", "yaml", "json"):
                path = os.path.join(base, "flux", f"{self.name}.{ext}")
                if os.path.exists(path):
                    out.append(path)
                    break
        return out

    @staticmethod
    def _read(path: str) -> dict:
        try:
            if path.endswith(".toml"):
                with open(path, "rb") as f:
                    data = tomllib.load(f)
            elif path.endswith(".yaml"):
                import yaml

                with open(path) as f:
                    data = yaml.safe_load(f) or {}
            else:
                with open(path) as f:
                    data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - yaml errors have their own classes
            raise ValueError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the configuration must be a table/mapping")
        return data

    def load(self) -> UtilConfig:
        for path in self._paths():
            data = self._read(path)
            if self.subcommand is not None:
                data = data.get(self.subcommand, {})
                if not isinstance(data, dict):
                    raise ValueError(f"{path}: '{self.subcommand}' must be a table")
            self.validate(path, data)
            _merge(self.config, data)
        return self

    def validate_formats(self, path: str, formats: Any) -> None:
        if not isinstance(formats, dict):
            raise ValueError(f"{path}: the 'formats' key must be a mapping")
        for name, entry in formats.items():
            if name in self.builtin_formats:
                raise ValueError(f"{path}: override of builtin format '{name}' not permitted")
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: 'formats.{name}' must be a mapping")
            if "format" not in entry:
                raise ValueError(f"{path}: formats.{name}: required key 'format' missing")
            if not isinstance(entry["format"], str):
                raise ValueError(f"{path}: formats.{name}: 'format' key must be a string")

    def validate(self, path: str, config: dict) -> None:
        """Check a loaded file (override in tools); by default only `formats` is allowed."""
        for key, value in config.items():
            if key == "formats":
                self.validate_formats(path, value)
            else:
                raise ValueError(f"{path}: invalid key {key}")

    # -------------------------------------------------------------- access
    def __getattr__(self, attr: str) -> Any:
        config = self.__dict__.get("config", {})
        if attr in config:
            return config[attr]
        raise AttributeError(attr)

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def get_format_string(self, format_name: str) -> str:
        """The format for `-o ARG`: ARG itself if it has a `{`, else the named format.

        `help` prints the known names and exits; `get-config=NAME` prints NAME as TOML
        and exits; an unknown name is a ValueError."""
        import sys

        if "{" in format_name:
            return format_name
        formats = self.config.get("formats", {})
        if format_name == "help":
            print(f"\nConfigured {self.toolname} output formats:\n")
            for name, entry in formats.items():
                desc = entry.get("description")
                print(f"  {name:<12}" + (f" {desc}" if desc else ""))
            sys.exit(0)
        if format_name.startswith("get-config="):
            name = format_name.split("=", 1)[1]
            entry = formats.get(name)
            if entry is None:
                raise ValueError(f"--format: No such format {name}")
            print(f"[formats.{name}]")
            if "description" in entry:
                print(f'description = "{entry["description"]}"')
            print(f'format = "{entry["format"]}"')
            sys.exit(0)
        if format_name == "default":
            env = "FLUX_" + self.toolname.upper().replace("-", "_").removeprefix("FLUX_") \
                + "_FORMAT_DEFAULT"
            alt = os.environ.get(env)
            if alt:
                format_name = alt
                if "{" in alt:
                    return alt
        try:
            return formats[format_name]["format"]
        except KeyError:
            raise ValueError(f"--format: No such format {format_name}") from None
