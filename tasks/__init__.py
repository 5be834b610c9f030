"""The four workflows, each a plain-function core plus thin Celery tasks.

``csv_batches`` (recipient CSVs), ``letters`` (transient letters), ``reports`` (exports),
``cleanup`` (expired and orphaned objects), and ``reconcile`` (re-driving lost or stuck jobs).
"""
