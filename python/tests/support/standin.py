"""Which Aleph stand-in this process imports as `aleph`.

ROLESYNC_STANDIN names it: `aleph41` (Aleph 4.1.6) or `openaleph53`
(OpenAleph 5.3); unset means `aleph41`. `activate()` puts that stand-in's
folder first on sys.path. A process holds one stand-in only: activating the
other one after `aleph` was imported is an error.
"""
import os
import sys
from pathlib import Path
from typing import Optional

ALEPH41 = "aleph41"
OPENALEPH53 = "openaleph53"
LINES = (ALEPH41, OPENALEPH53)
ENV = "ROLESYNC_STANDIN"

STANDINS = Path(__file__).resolve().parent.parent / "standins"


def current_line() -> str:
    line = os.environ.get(ENV, "").strip() or ALEPH41
    if line not in LINES:
        raise RuntimeError("%s must be one of %s, not %r" % (ENV, ", ".join(LINES), line))
    return line


def folder(line: str) -> str:
    return str(STANDINS / line)


def activate(line: Optional[str] = None) -> str:
    """Makes `import aleph` load the stand-in of `line` (default: ROLESYNC_STANDIN); returns the line."""
    line = line or current_line()
    wanted = folder(line)
    others = {folder(other) for other in LINES if other != line}
    loaded = sys.modules.get("aleph")
    if loaded is not None:
        origin = str(Path(getattr(loaded, "__file__", "") or "").resolve())
        if not origin.startswith(wanted + os.sep):
            raise RuntimeError("`aleph` is already imported from %s; cannot switch to the %s stand-in" % (origin, line))
    sys.path[:] = [entry for entry in sys.path if entry not in others and entry != wanted]
    sys.path.insert(0, wanted)
    os.environ[ENV] = line
    return line


def is_aleph41(line: Optional[str] = None) -> bool:
    return (line or current_line()) == ALEPH41
