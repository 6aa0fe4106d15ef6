import sys

from qhw.cli import main

sys.exit(main())
