"""`python -m deep_platform` is `deep-platform`."""

import sys

from .cli import main

sys.exit(main())
