"""``python -m domainbert`` is the same as the ``domainbert`` console script."""

from domainbert.cli import main

raise SystemExit(main())
