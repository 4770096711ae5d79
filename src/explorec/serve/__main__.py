"""``python -m explorec.serve``: run the service (see :mod:`explorec.serve.server`)."""

from explorec.serve.server import main

raise SystemExit(main())
