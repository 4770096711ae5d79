"""The service's dashboard at ``/dashboard``: Overview, Policies, Users and Items pages over the
store the service writes, with their data at ``/dashboard/api/*``.

:mod:`.routes` holds the pages, the login and the static files (plotly.js is served from the
installed plotly package); :mod:`.data` builds each page's data from the store's read-only
aggregate queries and the live engine; :mod:`.charts` turns it into plotly figures. Templates
and static files are package data.
"""

from __future__ import annotations

from explorec.serve.dashboard.routes import router

__all__ = ["router"]
