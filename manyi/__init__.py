"""manyi (满意): citizen-satisfaction terminals, collector, analytics and control center.

This package holds what every part shares: the wire protocol, settings, time periods,
the region registry and the ``manyi`` command.
"""

__version__ = "0.1.0"
