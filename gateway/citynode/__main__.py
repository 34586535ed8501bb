import sys

from citynode.cli.main import main

sys.exit(main())
