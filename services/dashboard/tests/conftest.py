"""Fixtures of the dashboard tests; the helpers live in `dashboard_stack.py` beside this file.

With `--import-mode=importlib` a test cannot import this conftest, so the helper module is
put on the path here, under a name no other package's tests use.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dashboard_stack import alerts, backend, dashboard_extra, scheduler_extra, stack

__all__ = ["alerts", "backend", "dashboard_extra", "scheduler_extra", "stack"]
