"""`python -m hfcompress ...` (and `torchrun ... -m hfcompress compress ...`): the command line."""

import sys

from .cli import main

sys.exit(main())
