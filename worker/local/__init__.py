"""Local stand-ins for the demo and the tests: a private ``redis-server``, an embedded S3
(moto's server over HTTP) and real prefork worker subprocesses. Never used in production.
"""
