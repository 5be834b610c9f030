"""``notify-worker demo``: every workflow on embedded defaults, with progress and a summary."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
from rich.table import Table

from worker.cli.output import console

COMMANDS: list = []


@click.command("demo")
@click.option("--keep", is_flag=True, help="Leave the stack running at the end (Ctrl-C stops).")
@click.option("--workdir", type=click.Path(path_type=Path), help="Where logs go (default: tmp).")
def demo_command(keep: bool, workdir: Path | None) -> None:
    """Create the buckets, start a real worker and run the workflows end to end."""
    from storage import admin
    from worker import queues
    from worker.client import send_by_name
    from worker.stack import local_stack

    workdir = workdir or Path(tempfile.mkdtemp(prefix="notify-demo-"))
    summary = Table(title="notify-worker demo", show_edge=False)
    summary.add_column("step")
    summary.add_column("result")
    with local_stack(workdir) as stack:
        console.print(f"Redis  {stack.redis_url}")
        console.print(f"S3     {stack.s3_endpoint or 'AWS'}")
        names = admin.create_buckets()
        summary.add_row("buckets created", str(len(names)))
        check = admin.check_buckets()
        if not check.ok:
            for problem in check.problems:
                console.print(f"[red]FAIL[/] {problem}")
            raise SystemExit(1)
        summary.add_row("buckets checked", "all ok")
        with console.status("starting a worker"):
            worker = stack.start_worker(concurrency=2)
        console.print(f"worker pid {worker.pid}, logs in {worker.log_path}")
        started = time.monotonic()
        result = send_by_name(queues.JOBS_RECONCILE, {}).get(timeout=60)
        summary.add_row(
            "reconcile round trip", f"{result['status']} in {time.monotonic() - started:.2f}s"
        )
        console.print(summary)
        if keep:
            console.print("stack is up; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass


COMMANDS.append(demo_command)
