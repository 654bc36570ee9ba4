"""``python -m lasercc``: the same as the ``lasercc`` command (Ctrl-C while importing: exit 130, no traceback)."""

import sys

try:
    from lasercc.cli import main
except KeyboardInterrupt:  # pragma: no cover - timing dependent
    print("lasercc: interrupted", file=sys.stderr)
    sys.exit(130)

try:
    code = main()
except KeyboardInterrupt:  # pragma: no cover - a Ctrl-C in the instant after main restored the handler
    print("lasercc: interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
