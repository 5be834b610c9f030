"""Built-in report sources, one module per kind.

Each module has ``KIND``, ``COLUMNS``, ``check_params(params) -> params`` (refuses bad params
with ``invalid_params``, no I/O) and ``source(service_id, params) -> (header, rows)``. A source
checks what must exist (the job, the upload) when called, before returning its lazy row
iterator, so "not found" is reported before anything is written.
"""
