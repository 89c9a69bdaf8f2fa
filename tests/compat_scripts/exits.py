"""Checks `fulgor run` keeps `python SCRIPT` semantics: argv, __name__, sys.path[0], exit codes, tracebacks."""

import os
import sys

import pytorch_lightning

print(f"argv={sys.argv[1:]} name={__name__} path0={os.path.basename(sys.path[0])} pl={pytorch_lightning.__version__}")
if sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
if sys.argv[1] == "raise":
    raise ValueError("boom from the script")
if sys.argv[1] == "missing":
    from pytorch_lightning.utilities import definitely_not_there  # noqa: F401
