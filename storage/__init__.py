"""Everything S3: the bucket registry, key layouts, the client and the streaming helpers.

Modules, one job each: ``buckets`` (the registry and its policies), ``settings`` (settings from
the environment), ``client`` (one client per process), ``keys`` (layouts, id checks),
``errors`` (typed errors), ``objects`` (single-object reads and writes), ``listing``,
``upload`` (multipart writer), ``copies``, ``deletes`` and ``admin`` (create/check/policy).
"""
