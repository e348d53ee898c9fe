"""search_files' worker, run in the sandbox as `python -I -m agentcom_sidecar.agentic.search`.

A regular expression can backtrack practically for ever (`(a+)+$`), and a thread running it
cannot be stopped; a child process can: the sandbox's timeout and CPU limit end it. Only the
standard library is imported here, so the child starts fast. Its one argument is a JSON object
(root, start, pattern, file_pattern, max_matches, max_files, max_file_bytes, max_output); it
prints one JSON object: matches, files_searched, truncated.
"""

import fnmatch
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, Final

SKIP_DIRS: Final = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "_build", "deps", "dist", "build"}
)
LINE_CUT: Final = 500


def walk(start: str) -> Iterator[str]:
    if os.path.isfile(start):
        yield start
        return
    for folder, dirs, names in os.walk(start):  # followlinks=False: symlinked folders skipped
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        yield from (os.path.join(folder, name) for name in sorted(names))


def grep(path: str, regex: re.Pattern[str], max_bytes: int) -> Iterator[tuple[int, str]]:
    if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > max_bytes:
        return
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if b"\x00" in raw[:512]:
        return
    for number, line in enumerate(raw.decode(errors="replace").splitlines(), start=1):
        cut = line[:LINE_CUT]  # long lines are cut before matching too: bounds the work per line
        if regex.search(cut):
            yield number, cut


def search(params: dict[str, Any]) -> dict[str, Any]:
    regex = re.compile(params["pattern"])
    root, file_pattern = params["root"], params.get("file_pattern")
    matches: list[dict[str, Any]] = []
    searched, size, truncated = 0, 64, False
    for path in walk(params["start"]):
        if file_pattern and not fnmatch.fnmatch(os.path.basename(path), file_pattern):
            continue
        if searched >= params["max_files"]:
            return {"matches": matches, "files_searched": searched, "truncated": True}
        searched += 1
        for number, line in grep(path, regex, params["max_file_bytes"]):
            match = {"file": os.path.relpath(path, root), "line": number, "content": line}
            size += len(json.dumps(match)) + 2
            if len(matches) >= params["max_matches"] or size > params["max_output"]:
                truncated = True
                break
            matches.append(match)
        if truncated:
            break
    return {"matches": matches, "files_searched": searched, "truncated": truncated}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(search(json.loads(sys.argv[1]))))
