"""``notify-worker demo``: every workflow on embedded defaults, with progress and a summary."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
from rich.table import Table

from worker.cli.output import console
from worker.runtime.settings import sanitize_url


@click.command("demo")
@click.option("--keep", is_flag=True, help="Leave the stack up at the end (Ctrl-C stops it).")
@click.option("--workdir", type=click.Path(path_type=Path), help="Where logs go (default: tmp).")
@click.option("--concurrency", default=2, show_default=True, help="Worker processes.")
def demo_command(keep: bool, workdir: Path | None, concurrency: int) -> None:
    """Run every workflow end to end through a real worker, then print a summary.

    S3 is an embedded moto server unless S3_ENDPOINT_URL is set; Redis is REDIS_URL, or a
    private redis-server started for the demo when none answers.
    """
    from storage import admin
    from worker.client import send_by_name
    from worker.demo.metrics_view import summary_lines
    from worker.demo.scenario import Demo
    from worker.local.servers import free_port
    from worker.local.stack import local_stack
    from worker.runtime import queues
    from worker.runtime.metrics import configured_host

    workdir = workdir or Path(tempfile.mkdtemp(prefix="notify-demo-"))
    started = time.monotonic()
    with local_stack(workdir) as stack:
        console.print(f"Redis   {sanitize_url(stack.redis_url)}")
        console.print(f"S3      {stack.s3_endpoint or 'AWS (default endpoint)'}")
        names = admin.create_buckets()
        check = admin.check_buckets()
        for problem in check.problems:
            console.print(f"[red]FAIL[/] {problem}")
        if not check.ok:
            raise SystemExit(1)
        console.print(f"buckets {len(names)} created and checked (encryption, lifecycle, region)")
        # The worker serves metrics (the port the environment names, else a free one).
        metrics_port = stack.env.setdefault("NOTIFY_METRICS_PORT", str(free_port()))
        metrics_url = f"http://{configured_host(stack.env)}:{metrics_port}/metrics"
        with console.status("starting a worker (prefork)"):
            worker = stack.start_worker(concurrency=concurrency)
        console.print(f"worker  pid {worker.pid}, log {worker.log_path}")
        console.print(f"metrics {metrics_url}", highlight=False, soft_wrap=True)
        ping = send_by_name(queues.JOBS_RECONCILE, {}).get(timeout=60)
        console.print(f"round trip: notify.jobs.reconcile -> {ping['status']}")

        report = Demo(console).run()

        table = Table(title="notify-worker demo: summary", show_lines=False)
        table.add_column("workflow step", style="bold")
        table.add_column("result")
        for step, result in report.rows:
            table.add_row(step, result)
        console.print(table)
        time.sleep(0.3)  # a task's counters are written just after its result is stored
        try:
            figures = summary_lines(metrics_url)
        except OSError as error:
            report.problems.append(f"metrics not scraped from {metrics_url}: {error}")
            figures = []
        console.print(f"from a scrape of {metrics_url}:", highlight=False, soft_wrap=True)
        for line in figures:
            console.print(f"  {line}", highlight=False)
        console.print(f"finished in {time.monotonic() - started:.1f}s; logs in {workdir}")
        for problem in report.problems:
            console.print(f"[red]problem:[/] {problem}")
        if keep:
            console.print(
                f"stack is up (Redis {sanitize_url(stack.redis_url)}, S3 {stack.s3_endpoint}); "
                "Ctrl-C to stop"
            )
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    if report.problems:
        raise SystemExit(1)


COMMANDS = [demo_command]
