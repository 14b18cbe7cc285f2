"""``python -m zdshm``: see :mod:`zdshm.cli`."""
from zdshm.cli import main

raise SystemExit(main())
