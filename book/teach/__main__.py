"""``python -m book.teach student|nbgrader|grade ...`` (see :mod:`book.teach`)."""
import sys

from book.teach.cli import main

sys.exit(main())
