import sys

from alg.cli import main

sys.exit(main())
