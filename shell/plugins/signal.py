"""signal: warn tasks before the time limit (`--signal=SIG@TIME`).

Shell option `signal = {signum, timeleft}` (defaults SIGUSR1, 60 s): `timeleft`
seconds before R's expiration, every local task gets `signum`.
"""

from __future__ import annotations

import signal as _signal
import time

from flux.core.hookspecs import hookimpl


@hookimpl
def shell_start(shell):
    opt = shell.getopt("signal")
    if opt is None or opt is False or opt == 0:
        return
    if not isinstance(opt, dict):
        opt = {}
    signum = opt.get("signum", _signal.SIGUSR1)
    timeleft = opt.get("timeleft", 60)
    if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < 65:
        raise ValueError(f"signal.signum must be a signal number, not {signum!r}")
    if isinstance(timeleft, bool) or not isinstance(timeleft, int | float) or timeleft < 0:
        raise ValueError(f"signal.timeleft must be a number of seconds, not {timeleft!r}")
    exp = shell.info.expiration
    if not exp:
        return
    delay = max(0.0, exp - timeleft - time.time())

    def fire():
        shell.log(6, f"sending {_signal.Signals(signum).name} to tasks "
                     f"({timeleft}s before the time limit)", component="signal")
        shell.kill(signum)

    shell.aux["signal.timer"] = shell.loop.call_later(delay, fire)


@hookimpl
def shell_exit(shell):
    t = shell.aux.pop("signal.timer", None)
    if t is not None:
        t.cancel()
