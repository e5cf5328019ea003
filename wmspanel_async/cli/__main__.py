"""``python -m wmspanel_async.cli``: the same as the ``wmspanel-async`` command."""

import sys

from . import main

sys.exit(main())
