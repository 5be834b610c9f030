"""Micro-benchmark: csv parsing + row validation for SMS and email files.

Generates N rows (default 100,000) of each kind as CSV text in memory, about 2% of them bad,
then times ``csv.reader`` + ``ColumnLayout.check_row`` over them and prints rows per second.
For comparison it also times a phonenumbers-only baseline (every number through
``validate_sms_slow``) on a sample.  A plain script, not a test:

    python bench/csv_validation.py [--rows N] [--repeat R] [--seed S] [--bad-rate 0.02]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.csv_batches.validation.columns import ColumnLayout
from tasks.csv_batches.validation.recipients import validate_sms_slow

_BAD_EMAIL = ["someone@", "a..b@example.com", "no-at-sign.example.com", "x@localhost", ""]


def _bad_phone(rng: random.Random) -> str:
    """A unique bad number (so no cache could flatter the figures), in a plausible mix."""
    kind = rng.random()
    if kind < 0.2:
        return ""  # missing
    if kind < 0.3:
        return rng.choice(["n/a", "unknown", "07700 900 12x", "see notes"])  # unknown_character
    if kind < 0.55:
        return f"07{rng.randrange(10**8):08d}"  # a digit short
    if kind < 0.75:
        return f"07{rng.randrange(10**10):010d}"  # a digit too many
    if kind < 0.9:
        return f"01{rng.randrange(10**9):09d}"  # a landline: not a UK mobile
    return f"+1 {rng.randrange(200, 999)} {rng.randrange(10**7):07d}"  # international


_HOSTS = ["example.com", "example.co.uk", "gov.uk", "digital.cabinet-office.gov.uk", "nhs.net"]


def _phone(rng: random.Random) -> str:
    """A UK mobile in one of the spellings people type."""
    subscriber = f"{rng.randrange(10**8):08d}"
    national = "7" + rng.choice("1234579") + subscriber
    shape = rng.random()
    if shape < 0.5:
        return "0" + national
    if shape < 0.7:
        return f"0{national[:4]} {national[4:]}"
    if shape < 0.85:
        return f"+44 {national[:4]} {national[4:7]} {national[7:]}"
    if shape < 0.95:
        return "44" + national
    return f"(0{national[:4]}) {national[4:7]}-{national[7:]}"


def generate_sms(rows: int, rng: random.Random, bad_rate: float = 0.02) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["phone number", "name", "reference"])
    for i in range(rows):
        phone = _bad_phone(rng) if rng.random() < bad_rate else _phone(rng)
        writer.writerow([phone, f"Person {i}", f"REF-{i:06d}"])
    return out.getvalue()


def generate_email(rows: int, rng: random.Random, bad_rate: float = 0.02) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email address", "name", "reference"])
    for i in range(rows):
        if rng.random() < bad_rate:
            email = rng.choice(_BAD_EMAIL)
        else:
            email = f"person.{i}@{rng.choice(_HOSTS)}"
        writer.writerow([email, f"Person {i}", f"REF-{i:06d}"])
    return out.getvalue()


def run(text: str, template_type: str) -> tuple[float, float, int, int]:
    """CPU seconds, wall seconds, rows, invalid rows: csv.reader + check_row over the text."""
    start_cpu = time.process_time()
    start = time.perf_counter()
    reader = csv.reader(io.StringIO(text))
    layout = ColumnLayout.from_header(
        next(reader), template_type=template_type, placeholders=["name"]
    )
    check_row = layout.check_row
    rows = invalid = 0
    for cells in reader:
        rows += 1
        if not check_row(cells).ok:
            invalid += 1
    return time.process_time() - start_cpu, time.perf_counter() - start, rows, invalid


def best_of(repeat: int, text: str, template_type: str) -> tuple[float, float, int, int]:
    return min((run(text, template_type) for _ in range(repeat)), key=lambda r: r[0])


def baseline(values: list[str]) -> float:
    """Valid UK mobiles per CPU second through the phonenumbers path only (no fast path)."""
    start = time.process_time()
    for value in values:
        validate_sms_slow(value)
    return len(values) / (time.process_time() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    parser.add_argument("--bad-rate", type=float, default=0.02, help="share of bad rows")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    sms_text = generate_sms(args.rows, rng, args.bad_rate)
    email_text = generate_email(args.rows, rng, args.bad_rate)
    parse_only = min(_parse_only(sms_text) for _ in range(args.repeat))

    sms_cpu, sms_wall, sms_rows, sms_invalid = best_of(args.repeat, sms_text, "sms")
    email_cpu, email_wall, email_rows, email_invalid = best_of(args.repeat, email_text, "email")
    sample = [_phone(rng) for _ in range(args.baseline_sample)]
    slow_rate = baseline(sample)

    # Rates are per CPU second of this process (process_time), so that other work on the
    # machine does not distort them; wall-clock rates are shown alongside.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"rows per file: {args.rows:,} (best of {args.repeat}); load average {load:.2f}")
    print(f"csv.reader only (sms file):      {args.rows / parse_only:>10,.0f} rows/s")
    for name, cpu, wall, rows, invalid in (
        ("sms  ", sms_cpu, sms_wall, sms_rows, sms_invalid),
        ("email", email_cpu, email_wall, email_rows, email_invalid),
    ):
        print(
            f"{name} csv + check_row:           {rows / cpu:>10,.0f} rows/s"
            f"   ({cpu / rows * 1e6:.2f} µs/row; wall {rows / wall:,.0f} rows/s;"
            f" {invalid:,} invalid)"
        )
    print(
        f"phonenumbers-only baseline:      {slow_rate:>10,.0f} numbers/s"
        f"   ({1e6 / slow_rate:.1f} µs/number, valid mobiles, validation alone)"
    )


def _parse_only(text: str) -> float:
    start = time.process_time()
    for _ in csv.reader(io.StringIO(text)):
        pass
    return time.process_time() - start


if __name__ == "__main__":
    main()
