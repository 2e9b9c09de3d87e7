"""``python -m pipeline.tasks``: see :mod:`pipeline.tasks.cli`."""

import sys

from pipeline.errors import report_errors
from pipeline.tasks.cli import main

sys.exit(report_errors(main))
