"""Build the setuid-root shim that makes `flux-imp` callable by the instance owner.

    python -m flux.imp.shim --config /etc/flux/imp.toml --group flux /usr/libexec/flux/flux-imp

compiles a 30-line C program (needs `cc`), owned by root and the given group, mode
4750 (only that group may run it). The shim keeps the caller's real uid, moves the
caller's environment under FLUX_IMP_ENV_* (so no LD_*, PYTHON* reaches the privileged
interpreter), sets FLUX_IMP_CONFIG to the path compiled in, and runs
`PYTHON -I <this folder>/__main__.py ARGS...`.
"""

from __future__ import annotations

import argparse
import grp
import os
import subprocess
import sys
import tempfile

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    size_t n = 0, k = 0;
    char **e;
    for (e = environ; *e; e++)
        n++;
    char **env = calloc(n + 4, sizeof(char *));
    char **args = calloc(argc + 3, sizeof(char *));
    if (!env || !args)
        return 126;
    env[k++] = "FLUX_IMP_CONFIG=" IMP_CONFIG;
    env[k++] = "FLUX_IMP_SHIM=1";
    env[k++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    for (e = environ; *e; e++) {
        char *s = malloc(strlen(*e) + sizeof("FLUX_IMP_ENV_"));
        if (!s)
            return 126;
        strcpy(s, "FLUX_IMP_ENV_");
        strcat(s, *e);
        env[k++] = s;
    }
    args[0] = IMP_PYTHON;
    args[1] = "-I";
    args[2] = IMP_MAIN;
    for (int i = 1; i < argc; i++)
        args[i + 2] = argv[i];
    execve(IMP_PYTHON, args, env);
    perror("flux-imp: " IMP_PYTHON);
    return 126;
}
"""


def _cstr(s: str) -> str:
    if any(c in s for c in '"\\\n'):
        raise ValueError(f"path {s!r} cannot be compiled into the shim")
    return f'"{s}"'


def build(out: str, config: str, group: str | None = None, mode: int = 0o4750,
          python: str = sys.executable) -> None:
    main = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "flux-imp.c")
        with open(src, "w") as f:
            f.write(SOURCE)
        tmp = out + ".new"
        subprocess.run(["cc", "-O2", "-o", tmp, f"-DIMP_CONFIG={_cstr(config)}",
                        f"-DIMP_PYTHON={_cstr(python)}", f"-DIMP_MAIN={_cstr(main)}", src],
                       check=True)
    os.chown(tmp, 0, grp.getgrnam(group).gr_gid if group else 0)
    os.chmod(tmp, mode)  # after chown, which clears the setuid bit
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flux.imp.shim", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="/etc/flux/imp.toml", help="IMP config compiled in")
    p.add_argument("--group", help="group allowed to run it (the instance owner's)")
    p.add_argument("--mode", default="4750", help="file mode (octal), default 4750")
    p.add_argument("output", help="where to install the shim")
    a = p.parse_args(argv)
    build(a.output, a.config, a.group, int(a.mode, 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
