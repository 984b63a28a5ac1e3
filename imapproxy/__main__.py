"""``python -m imapproxy``: the same as the ``imapproxy`` command."""

import sys

from imapproxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
