"""The cost of TLS to Redis: the CSV workflow end to end over ``rediss://`` vs ``redis://``.

    python bench/redis_tls.py [--rows 100000] [--repeats 2]

Two private redis-servers on 127.0.0.1, one plain and one TLS-only (certificate from a CA made
for the run, ``NOTIFY_REDIS_CA_FILE``, an ACL user in the URL); the same SMS file through
``bench/csv_batches.end_to_end`` (embedded moto S3, a fresh prefork worker per run, a warm-up
job first) on each, alternating, ``--repeats`` times. Prints rows/s per run and the median ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from csv_batches import end_to_end, write_file  # noqa: E402

from tests.redis_fixtures import make_tls_files  # noqa: E402
from worker.local.servers import start_redis_server  # noqa: E402

USER, PASSWORD = "bench", "bench-tls-pw"


def one_run(url: str, path: Path, rows: int) -> dict:
    """One measurement in a fresh process: a process's Celery app keeps the broker it was
    configured with, so each Redis gets its own."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--one", url, "--file", str(path), "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import json

        (result,) = end_to_end([("sms", args.rows, Path(args.file))], args.rows, redis_url=args.one)
        print(json.dumps(result))
        return
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="redis-tls-bench-") as tmp:
        folder = Path(tmp)
        tls = make_tls_files(folder / "tls")
        acl = ["--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]
        plain_server = start_redis_server(extra_args=acl)
        tls_server = start_redis_server(tls=tls, extra_args=acl)
        urls = {
            "plain": f"redis://{USER}:{PASSWORD}@127.0.0.1:{plain_server.port}/0",
            "tls": f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_server.port}/0",
        }
        os.environ["NOTIFY_REDIS_CA_FILE"] = tls.ca_file
        path = folder / "sms.csv"
        write_file(path, "sms", args.rows)
        rates: dict[str, list[float]] = {"plain": [], "tls": []}
        try:
            for _ in range(args.repeats):
                for name, url in urls.items():
                    result = one_run(url, path, args.rows)
                    assert result["status"] == "ok", result
                    rates[name].append(result["rows_per_s"])
                    print(
                        f"{name:5} {args.rows:,} rows: {result['rows_per_s']:,.0f} rows/s "
                        f"({result['seconds']:.2f} s)",
                        flush=True,
                    )
        finally:
            plain_server.stop()
            tls_server.stop()
    plain, over_tls = statistics.median(rates["plain"]), statistics.median(rates["tls"])
    print(
        f"median: plain {plain:,.0f} rows/s, TLS {over_tls:,.0f} rows/s "
        f"({(over_tls / plain - 1) * 100:+.1f}%)"
    )


if __name__ == "__main__":
    main()
