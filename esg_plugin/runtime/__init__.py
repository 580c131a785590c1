"""The runtime inside every function built from ``template/esg-python3``:
a threaded WSGI server with dynamic batching and GPU-share hooks (SPEC §6).

Self-contained on purpose — it imports only the standard library,
``prometheus_client`` and, lazily, ``torch`` and ``pynvml`` — because a
function's image holds it without the rest of the package:
``template/esg-python3/esg_runtime`` is a link to this folder, and
``faas-cli template pull``/``build`` copy the files it points to.

Import from the modules (``.app``, ``.batcher``, ``.settings``, ``.server``,
``.v2``, ``.contract``): this package imports nothing on its own, so the
control plane reads ``contract`` without loading the server.
"""
