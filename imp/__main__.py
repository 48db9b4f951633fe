"""`python -m flux.imp`, and the file the setuid shim runs (`python -I .../imp/__main__.py`).

Run as a file, it loads this folder as a stand-alone package `flux_imp`, so that the
privileged process imports nothing of the `flux` package (SDK, broker).
"""

import importlib.util
import os
import sys

if __package__:
    from .main import main
else:
    _d = os.path.dirname(os.path.abspath(__file__))
    _spec = importlib.util.spec_from_file_location("flux_imp", os.path.join(_d, "__init__.py"),
                                                   submodule_search_locations=[_d])
    _pkg = importlib.util.module_from_spec(_spec)
    sys.modules["flux_imp"] = _pkg
    _spec.loader.exec_module(_pkg)
    from flux_imp.main import main

sys.exit(main())
