"""``python -m book.teach student|nbgrader|grade ...`` (see :mod:`book.teach`)."""
import sys

from . import main

sys.exit(main())
