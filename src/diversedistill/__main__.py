import sys

from diversedistill.cli import main

sys.exit(main())
