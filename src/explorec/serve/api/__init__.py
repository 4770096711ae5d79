"""The HTTP API: ``schemas`` (request/response models), ``middleware`` (body limit, metrics),
``errors`` (one JSON error shape), ``deps`` (typed dependencies on ``app.state``) and
``routes/`` (one module per tag). :func:`explorec.serve.app.create_app` assembles them."""
