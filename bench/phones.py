#!/usr/bin/env python3
"""Phone-number reading speed: `ivr-campaign validate` (the dry run) against the Python port of libphonenumber
parsing, validating and formatting the same rows, in one run on one machine.

    python3 -m venv /tmp/pn && /tmp/pn/bin/pip install phonenumbers==9.0.42
    cargo build --release
    /tmp/pn/bin/python bench/phones.py [--rows 200000] [--bin target/release/ivr-campaign]

The list is ROWS mixed international numbers (every region's example numbers of every type and their
neighbours, written in E.164, international format, with dashes or dots), drawn at random so that countries
alternate as they do in an international list (nearly all are valid numbers). Both sides read the same CSV; the
runner also writes its decisions file, as `validate` does. Exits non-zero if the two disagree on how many rows
are valid numbers.
"""

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import phonenumbers as pn
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T

TYPES = [T.FIXED_LINE, T.MOBILE, T.TOLL_FREE, T.PREMIUM_RATE, T.SHARED_COST, T.VOIP, T.PERSONAL_NUMBER, T.UAN]


def pool(rng):
    numbers = []
    for region in sorted(pn.SUPPORTED_REGIONS):
        for t in TYPES:
            ex = pn.example_number_for_type(region, t)
            if ex is None:
                continue
            nsn = pn.national_significant_number(ex)
            for _ in range(4):
                digits = nsn[:-2] + "%02d" % rng.randint(0, 99)
                numbers.append(pn.parse("+" + str(ex.country_code) + digits, None))
    cells = []
    for n in numbers:
        intl = pn.format_number(n, F.INTERNATIONAL)
        cells += [pn.format_number(n, F.E164), intl, intl.replace(" ", "-"), intl.replace(" ", ".")]
    return cells


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--bin", default="target/release/ivr-campaign")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cells = pool(rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "contacts.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "phone"])
            for i in range(args.rows):
                w.writerow(["p%d" % i, rng.choice(cells)])

        t0 = time.perf_counter()
        valid = 0
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    n = pn.parse(row["phone"], "US")
                except pn.NumberParseException:
                    continue
                if pn.is_valid_number(n):
                    pn.format_number(n, F.E164)
                    valid += 1
        python_s = time.perf_counter() - t0

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            [args.bin, "validate", "--input", path, "--app", "bench", "--default-region", "US"],
            capture_output=True, text=True,
        )
        runner_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            sys.exit(f"validate failed ({out.returncode}): {out.stderr.strip()}")
        with open(os.path.join(tmp, "contacts.results.dry-run.csv"), newline="") as f:
            called = sum(1 for r in csv.DictReader(f) if r["decision"] in ("would_call", "duplicate"))

    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{args.rows} rows, {len(cells)} distinct cells; {version}; phonenumbers {pn.__version__}")
    print(f"python (parse, is_valid_number, format E.164): {python_s:.2f} s, {valid} valid")
    print(f"ivr-campaign validate: {runner_s:.2f} s, {called} valid (would_call or duplicate), "
          f"peak RSS {after.ru_maxrss / 1024:.0f} MiB, user+sys {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.2f} s")
    print(f"ratio: {python_s / runner_s:.1f}x faster")
    if valid != called:
        sys.exit(f"the two sides disagree: {valid} valid for the Python port, {called} for the runner")


if __name__ == "__main__":
    main()
