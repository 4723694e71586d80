"""Kopf handlers. Importing this package registers them (``kopf run -m cdc_operator.handlers``).

Handlers stay thin: they fetch, call the pure ``render/`` and ``status/``
functions, and write. Every trigger (create, update, a watched change, the periodic pass)
runs the same idempotent reconcile pass under a per-pipeline lock.
"""

from cdc_operator.handlers import lifecycle, pipeline, watch

__all__ = ["lifecycle", "pipeline", "watch"]
