"""`python -m qtasks`."""

from __future__ import annotations

import sys

from qtasks.cli import main

sys.exit(main())
