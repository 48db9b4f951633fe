"""Leave a finished process without the interpreter's teardown.

Python's exit clears every module and runs the garbage collector over the whole heap:
about 8 ms for a short `flux` command and more for a broker that held many jobs, time
that a user waiting on `flux run` or `flux start` sees and nothing needs.
"""

from __future__ import annotations

import os
import sys


def exit_now(rc: int) -> None:
    """Exit with rc after atexit handlers and a flush of stdout/stderr. A process that
    still has a non-daemon thread running exits normally, which waits for it."""
    threading = sys.modules.get("threading")
    if threading is not None and any(
            t.is_alive() and not t.daemon and t is not threading.main_thread()
            for t in threading.enumerate()):
        sys.exit(rc)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written
            pass
    os._exit(rc)
