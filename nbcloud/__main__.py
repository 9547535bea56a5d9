import sys

from nbcloud.ui.cli import main

sys.exit(main())
