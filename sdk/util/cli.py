"""argparse helpers used by Flux commands (the names flux-core's flux.util offers)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable

from flux.util.parse import set_treedict

__all__ = ["CLIMain", "FilterAction", "FilterActionSetUpdate", "FilterActionUser",
           "FilterTrueAction", "TreedictAction", "YesNoAction", "help_formatter"]


class FilterAction(argparse.Action):
    """Store the value and note that a filter option was given (`namespace.filtered`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.filtered = True


class FilterActionSetUpdate(argparse.Action):
    """Add comma separated values to a set (repeatable), noting a filter was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.filtered = True
        current = getattr(namespace, self.dest, None)
        if current is None:
            current = set()
        current = set(current)
        current.update(v for v in values.split(",") if v)
        setattr(namespace, self.dest, current)


class FilterActionUser(argparse.Action):
    """A user filter (`namespace.filtereduser` too, so implied user filters back off)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.filtered = True
        namespace.filtereduser = True
        setattr(namespace, self.dest, values)


class FilterTrueAction(argparse.Action):
    """A flag (store_true) that counts as a filter option."""

    def __init__(self, option_strings, dest, const=True, default=False, required=False,
                 help=None, metavar=None):  # noqa: A002 - argparse's keyword
        super().__init__(option_strings=option_strings, dest=dest, nargs=0, const=const,
                         default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)
        namespace.filtered = True


class TreedictAction(argparse.Action):
    """`key=value` arguments into a nested dict (`a.b=1` -> {"a": {"b": 1}}); values are
    JSON when they parse as JSON, else strings."""

    def __call__(self, parser, namespace, values, option_string=None):
        result = getattr(namespace, self.dest, None) or {}
        for arg in values if isinstance(values, list) else [values]:
            key, eq, val = arg.partition("=")
            if not eq:
                raise ValueError(f"Missing required value for key {arg}")
            try:
                v = json.loads(val)
            except (json.JSONDecodeError, TypeError):
                v = val
            set_treedict(result, key, v)
        setattr(namespace, self.dest, result)


class YesNoAction(argparse.Action):
    """An option taking `yes` or `no`, stored as a bool."""

    def __init__(self, option_strings, dest, help=None, metavar="[yes|no]"):  # noqa: A002
        super().__init__(option_strings=option_strings, dest=dest, help=help, metavar=metavar)

    def __call__(self, parser, namespace, value, option_string=None):
        if value not in ("yes", "no"):
            raise ValueError(f"{option_string} requires either 'yes' or 'no'")
        setattr(namespace, self.dest, value == "yes")


def help_formatter(argwidth: int = 40, raw_description: bool = False) -> Callable:
    """A HelpFormatter factory showing `-s, --long=ARG` with a wider option column."""

    class FluxHelpFormatter(argparse.HelpFormatter):
        def _format_action_invocation(self, action):
            if not action.option_strings:
                (metavar,) = self._metavar_formatter(action, action.dest)(1)
                return metavar
            opts = list(action.option_strings)
            text = ", ".join(opts)
            if len(opts) == 1 and len(opts[0]) > 2:
                text = "    " + opts[0]
            if action.nargs == 0:
                return text
            return text + "=" + self._format_args(action, action.dest.upper())

    base = FluxHelpFormatter
    if raw_description:
        class Raw(FluxHelpFormatter, argparse.RawDescriptionHelpFormatter):
            pass

        base = Raw
    return lambda prog: base(prog, max_help_position=argwidth)


class CLIMain:
    """Decorator running a command's main(): exceptions become `name: LEVEL: message` and
    exit code 1 (tracebacks at debug level, `FLUX_PYCLI_LOGLEVEL=10`)."""

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger()

    def __call__(self, main_func: Callable[[], object]) -> None:
        level = int(os.environ.get("FLUX_PYCLI_LOGLEVEL", logging.INFO))
        logging.basicConfig(level=level, format="%(name)s: %(levelname)s: %(message)s")
        code: object = 0
        try:
            main_func()
        except SystemExit as ex:
            code = ex.code
        except Exception as ex:  # noqa: BLE001 - every failure becomes a one-line error
            code = 1
            msg = getattr(ex, "strerror", None) or str(ex)
            if getattr(ex, "filename", None):
                msg += f": '{ex.filename}'"
            self.logger.error(msg)
            self.logger.debug(traceback.format_exc())
        finally:
            logging.shutdown()
        sys.exit(code)
