"""``python -m engine.dedup ...`` = ``nasname dedup ...``."""

import sys

from engine.dedup import main

sys.exit(main())
