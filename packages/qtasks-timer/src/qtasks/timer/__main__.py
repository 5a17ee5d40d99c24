"""`python -m qtasks.timer module:timer`."""

from __future__ import annotations

from qtasks.timer.cli import main

raise SystemExit(main())
