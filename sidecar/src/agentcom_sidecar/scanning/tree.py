"""The files a scanner looks at: the workspace's, less version control, virtualenvs, caches and
build output (which are not the repo's own work)."""

import os
from pathlib import Path
from typing import Final

SKIP_DIRS: Final = frozenset(
    {".git", ".hg", ".venv", "venv", "env", "node_modules", "__pycache__", "build", "dist"}
)
MAX_FILES: Final = 20_000
MAX_BYTES: Final = 1_000_000  # a bigger source file is generated or data: not read


def files(root: Path, suffix: str) -> list[str]:
    """Workspace-relative posix paths ending in `suffix`, sorted."""
    found: list[str] = []
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in names:
            if name.endswith(suffix):
                path = Path(top, name)
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_BYTES:
                    found.append(path.relative_to(root).as_posix())
            if len(found) >= MAX_FILES:
                return sorted(found)
    return sorted(found)
