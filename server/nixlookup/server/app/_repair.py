"""``nixlookup-server repair DATA_DIR [--yes]``: print what the store's repair finds, and run it on --yes.

The report goes to stdout for the person at the terminal (the log stays structlog on stderr). Every list
is named with what a start would do with it; a damaged one with what the repair keeps and what it would
lose. Nothing is changed without ``--yes``; with it, every file the repair replaces is moved into the
list's ``quarantine/repair-<time>/`` folder first (`nixlookup.server.store.repair_data_dir`).
"""

from __future__ import annotations

import sys
from typing import TextIO

from nixlookup.server.app._config import RepairConfig
from nixlookup.server.errors import NixlookupError
from nixlookup.server.store import repair_data_dir

__all__ = ["repair"]

EXIT_CLEAN = 0
EXIT_DAMAGE_LEFT = 1
EXIT_UNUSABLE = 2


def repair(config: RepairConfig, out: TextIO | None = None) -> int:
    """Report on (and with ``--yes`` repair) the data directory; the exit status says which happened.
    The report goes to `out` (stdout by default)."""
    out = out if out is not None else sys.stdout
    try:
        report = repair_data_dir(config.data_dir, apply=config.yes)
    except (NixlookupError, OSError) as error:
        print(f"nixlookup-server repair: {error}", file=out)
        return EXIT_UNUSABLE
    for plan in report.plans:
        for line in plan.describe():
            print(line, file=out)
    if not report.needed:
        print(f"{config.data_dir}: nothing to repair; the server starts on it as it is", file=out)
        return EXIT_CLEAN
    if not config.yes:
        print(
            f"nothing was changed. Run `nixlookup-server repair {config.data_dir} --yes` to repair as "
            "described (every file it replaces is moved into the list's quarantine/ folder)",
            file=out,
        )
        return EXIT_DAMAGE_LEFT
    for line in report.done:
        print(f"repaired: {line}", file=out)
    return EXIT_CLEAN
