"""The `qtasks` command line (`qtasks ...` or `python -m qtasks ...`).

Exit codes: 0 success; 1 the command ran but its answer is a failure (a task failed or was not
found, nothing to retry); 2 usage error; 3 the app could not be loaded (`-A`); 4 the broker could
not be reached; 5 a `--wait` timed out; 130 interrupted.
"""

from __future__ import annotations

from qtasks.cli.main import main

__all__ = ["main"]
