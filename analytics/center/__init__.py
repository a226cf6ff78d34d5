"""The control center's database: every table, its SQL and numbered migrations.

One module per concern: :mod:`.accounts` (users, tokens, sessions, login failures, the
audit log), :mod:`.registry` (active registry versions), :mod:`.imports` (import log,
survey answers, base scores, secrets), :mod:`.results` (published quarterly results),
:mod:`.cases` (follow-up cases) and :mod:`.alerts`. This package imports only the standard
library and manyi/; nothing outside it writes SQL for these tables.
"""

from .db import CenterDB, in_clause
from .migrations import MigrationError

__all__ = ["CenterDB", "MigrationError", "in_clause"]
