import sys

from landmarks.cli import main

sys.exit(main())
