"""Maps the repository's folders onto the `flux` import namespace.

core/ -> flux.core, shell/ -> flux.shell, imp/ -> flux.imp, sdk/ -> flux.
"""

import os

from setuptools import setup

ROOTS = {"flux": "sdk", "flux.core": "core", "flux.shell": "shell", "flux.imp": "imp"}


def find(prefix: str, folder: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        if "__init__.py" in filenames:
            rel = os.path.relpath(dirpath, folder)
            found.append(prefix if rel == "." else prefix + "." + rel.replace(os.sep, "."))
    return found


packages: list[str] = []
package_dir: dict[str, str] = {}
for prefix, folder in ROOTS.items():
    for pkg in find(prefix, folder):
        packages.append(pkg)
        if pkg in ROOTS:
            package_dir[pkg] = ROOTS[pkg]

setup(packages=packages, package_dir=package_dir)
