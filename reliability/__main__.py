"""``python -m blindmatch.reliability --out DIR``: measure robustness and write RELIABILITY.md."""

import sys

from .run import main

sys.exit(main())
