import sys

from groundedit.cli.main import main

sys.exit(main())
