"""Helpers shared by `flux` subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import wraps


class Parser(argparse.ArgumentParser):
    """argparse with flux's conventions: no abbreviations, errors name the command."""

    def __init__(self, prog: str, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(prog=prog, **kw)


def die(prog: str, message: str, code: int = 1) -> int:
    sys.stderr.write(f"{prog}: {message}\n")
    return code


def cli(prog: str) -> Callable:
    """Wrap a command's main: OSError becomes 'prog: message' and exit 1."""

    def deco(fn):
        @wraps(fn)
        def wrapper(argv):
            try:
                return fn(argv)
            except BrokenPipeError:  # `flux jobs | head`: the reader is gone, as in Flux
                try:
                    sys.stdout = open(os.devnull, "w")  # no flush error at exit
                except OSError:
                    pass
                return 0
            except OSError as exc:
                msg = exc.strerror or str(exc)
                return die(prog, msg)
            except (ValueError, LookupError) as exc:
                return die(prog, str(exc))

        return wrapper

    return deco


def open_handle(prog: str):
    import flux

    return flux.Flux()
