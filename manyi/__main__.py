"""``python -m manyi`` is the ``manyi`` command."""

import sys

from .cli import main

sys.exit(main())
