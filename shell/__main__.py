"""`python -m flux.shell JOBID`: the standalone job shell (see flux.shell.standalone)."""

import sys

from flux.shell.standalone import main

sys.exit(main())
