"""``python -m lasercc``: the same as the ``lasercc`` command."""

import sys

from lasercc.cli import main

sys.exit(main())
