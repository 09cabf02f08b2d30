"""``python -m kdist`` runs the ``kdist`` command."""

import sys

from .cli import main

sys.exit(main())
