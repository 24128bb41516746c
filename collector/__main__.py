"""`python -m collector` runs the same CLI as `contact-cost-exporter`."""

import sys

from collector.cli import main

sys.exit(main())
