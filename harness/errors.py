"""Where an exception is blamed: the line of the user's own file (a policy, any folder), not
the harness's.  Used by ``check``, ``run`` and the matrix's error records."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent) + os.sep


def where_raised(e: BaseException) -> str:
    """`` (file:line)`` of the deepest frame of the traceback outside the harness and the
    Python installation -- the line of the policy file (any folder) that raised, or that
    called what raised -- else of the deepest frame; ``""`` without a traceback or for a
    broken law."""
    from .laws import LawBroken
    tb = traceback.extract_tb(e.__traceback__)
    if not tb or isinstance(e, LawBroken):       # a law names its time and zone, not a line
        return ""
    lib = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix,
                                                        sys.exec_prefix)})
    fr = next((f for f in reversed(tb) if not f.filename.startswith("<")
               and not os.path.realpath(f.filename).startswith((_HERE, *lib))), tb[-1])
    return f" ({fr.filename}:{fr.lineno})"
