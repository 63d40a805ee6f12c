"""``python -m examples.dashboard.simulator --rate 50``: shop writes at a steady rate.

See :mod:`livesync.demo.simulator`; ``--help`` lists the options.
"""

import sys

from livesync.demo.simulator import main

if __name__ == "__main__":
    sys.exit(main())
