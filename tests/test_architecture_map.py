"""docs/architecture.md is a true map: every module of every package has its row, and no row is stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "nixlookup.server": ROOT / "server/nixlookup/server",
    "nixlookup.client": ROOT / "client/nixlookup/client",
    "nixlookup.bench": ROOT / "bench/nixlookup/bench",
    "nixlookup.replica": ROOT / "replica/nixlookup/replica",
    "nixlookup.v1": ROOT / "protos/nixlookup/v1",
}


def _rows() -> dict[str, set[str]]:
    """Module paths listed under each package's heading."""
    rows: dict[str, set[str]] = {}
    current = ""
    for line in (ROOT / "docs/architecture.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"### `(nixlookup\.\w+)`", line)
        if heading:
            current = heading.group(1)
            rows[current] = set()
        elif current and (row := re.match(r"\| `([\w/]+\.py)` \|", line)):
            rows[current].add(row.group(1))
    return rows


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    """Adding, moving or deleting a module means adding, moving or deleting its row in the map."""
    rows = _rows()
    for package, root in PACKAGES.items():
        modules = {str(path.relative_to(root)) for path in root.rglob("*.py") if "_pb2" not in path.name}
        listed = rows.get(package, set())
        assert listed == modules, (
            f"docs/architecture.md's {package} table is out of date: "
            f"missing {sorted(modules - listed)}, stale {sorted(listed - modules)}"
        )
