"""`python -m qtasks.webview`: the `qtasks-webview` console script."""

from __future__ import annotations

import sys

from qtasks.webview.cli import main

sys.exit(main())
