import sys

from urbanpulse.cli.main import main

sys.exit(main())
