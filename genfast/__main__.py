"""``python -m genfast ...`` (and ``torchrun ... -m genfast train NAME ...``): the ``genfast`` command."""

import sys

from genfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
