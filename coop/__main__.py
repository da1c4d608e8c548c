"""`python -m coop` is the same as the `coop` console script."""

from coop.cli import main

raise SystemExit(main())
