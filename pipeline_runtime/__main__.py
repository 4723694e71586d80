"""python -m pipeline_runtime: the headrace CLI."""

import sys

from pipeline_runtime.cli import main

sys.exit(main())
