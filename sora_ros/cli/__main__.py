"""`python -m sora_ros.cli`: the same as the `sora-ros` console script."""

import sys

from sora_ros.cli import main

sys.exit(main())
