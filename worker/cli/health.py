"""``notify-worker health``: the checks an orchestrator's probes call (exit 0 or 1, one JSON
line on stdout naming what failed)."""

from __future__ import annotations

import sys

import click


@click.command("health")
@click.option("--readiness", "mode", flag_value="readiness", help="Redis and every bucket answer.")
@click.option("--liveness", "mode", flag_value="liveness", help="This host's worker is consuming.")
def health_command(mode: str | None) -> None:
    """Readiness (Redis answers, every bucket reachable in AWS_REGION) or liveness (this host's
    worker process is consuming: its heartbeat file is fresh). Exit 0 healthy, 1 not."""
    from worker.runtime.health import check_liveness, check_readiness

    if mode is None:
        raise click.UsageError("give --readiness or --liveness")
    report = check_readiness() if mode == "readiness" else check_liveness()
    click.echo(report.line())
    sys.exit(0 if report.ok else 1)


COMMANDS = [health_command]
