"""The workers: a runtime that tasks build on (``worker.runtime``), the front-ends above the
tasks (``worker.cli``, ``worker.backfill``, ``worker.demo``, ``worker.local``) and the web
app's client (``worker.client``)."""
