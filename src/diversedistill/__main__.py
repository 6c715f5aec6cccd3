import sys

from diversedistill_recipes.cli import main

sys.exit(main())
