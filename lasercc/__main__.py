"""``python -m lasercc``: the same as the ``lasercc`` command (Ctrl-C while importing: exit 130, no traceback)."""

import sys

try:
    from lasercc.cli import main
except KeyboardInterrupt:  # pragma: no cover - timing dependent
    print("lasercc: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
