#!/usr/bin/env python3
"""Generates the golden phone-number corpus: what libphonenumber says of each cell under several default regions.

    python3 -m venv /tmp/pn && /tmp/pn/bin/pip install phonenumbers==9.0.42
    /tmp/pn/bin/python scripts/phone-corpus.py --seed 1 > tests/data/phone-corpus.tsv

The reference is `phonenumbers`, the Python port of libphonenumber, pinned to the metadata release of the crate
the runner uses (rlibphonenumber 2.2.15 carries 9.0.42): a different release disagrees on new ranges, and the
script refuses to run with one. Other seeds and `--spellings other` give cells the tests were not written
against (`tests/phone_corpus.rs` reads any corpus named in PHONE_CORPUS).

Cells: every region's example number of every type and random neighbours of it (the last digits changed), in
many spellings (E.164, international with spaces, dashes, dots, parentheses, without `+`, with the region's
international prefix, national with its trunk prefix, `+CC 0…` and `+CC 1…`), a number in every North American
area code and under every other prefix of the time-zone map, the non-geographic codes (+800, +808, …), and junk.
A cell appears once; the same number in other spellings is a duplicate the runner must key alike.

Columns (tab-separated, one line per cell and default region):
    region  cell  valid(1/0/-: 1 valid, 0 parsed but invalid, - not a number)  e164  type  zones
`zones` is libphonenumber's time_zones_for_number, `&`-joined, for valid numbers only; `geo`/`country` before
it says whether it came from the number's own prefix (a geographic type) or from its country code. To keep the
file small it is written on the first row of each E.164 number only (`=` on the others: the same number).
"""

import argparse
import random
import sys

import phonenumbers as pn
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T
from phonenumbers import timezone as tz
from phonenumbers.phonenumberutil import is_number_type_geographical
from phonenumbers.tzdata import TIMEZONE_DATA

RELEASE = "9.0.42"
REGIONS = ["US", "GB", "DE"]
TYPES = [
    T.FIXED_LINE, T.MOBILE, T.TOLL_FREE, T.PREMIUM_RATE, T.SHARED_COST, T.VOIP,
    T.PERSONAL_NUMBER, T.PAGER, T.UAN, T.VOICEMAIL,
]
TYPE_NAMES = {v: k for k, v in vars(T).items() if k.isupper()}


def spellings(n, rng, other):
    """Ways a person or a spreadsheet writes the number."""
    cc = str(n.country_code)
    nsn = pn.national_significant_number(n)
    intl = pn.format_number(n, F.INTERNATIONAL)
    national = pn.format_number(n, F.NATIONAL)
    region = pn.region_code_for_number(n)
    meta = pn.PhoneMetadata.metadata_for_region(region) if region and region != "001" else None
    out = [pn.format_number(n, F.E164), intl]
    if other:
        out += [
            intl.replace(" ", "."),
            "+" + cc + "/" + nsn,
            "00 " + cc + " " + nsn,
            "(+" + cc + ") " + nsn,
            cc + nsn,
            national.replace(" ", ""),
            "+" + cc + " (0) " + nsn,
            "+" + cc + "-1-" + nsn,
        ]
    else:
        out += [
            intl.replace(" ", "-"),
            intl.replace(" ", "."),
            "+" + cc + " (" + nsn[:3] + ") " + nsn[3:],
            cc + " " + nsn,
            "00" + cc + nsn,
            "011 " + cc + " " + nsn,
            national,
            nsn,
            "+" + cc + " 0" + nsn,
            "+" + cc + "1" + nsn,
        ]
        if meta is not None and meta.national_prefix:
            out.append("+" + cc + " " + meta.national_prefix + " " + nsn)
    rng.shuffle(out)
    return out[: rng.randint(1, 3)]


def neighbour(n, rng):
    """The number with its last one to three digits changed: valid or not, the reference decides."""
    nsn = list(pn.national_significant_number(n))
    for i in range(1, min(len(nsn), rng.randint(1, 3)) + 1):
        nsn[-i] = str(rng.randint(0, 9))
    try:
        return pn.parse("+" + str(n.country_code) + "".join(nsn), None)
    except pn.NumberParseException:
        return None


def numbers(rng, other):
    found = []
    for region in sorted(pn.SUPPORTED_REGIONS):
        for t in TYPES:
            ex = pn.example_number_for_type(region, t)
            if ex is None:
                continue
            found.append(ex)
            for _ in range(1):
                m = neighbour(ex, rng)
                if m is not None:
                    found.append(m)
    for cc in sorted(pn.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        ex = pn.example_number_for_non_geo_entity(cc)
        if ex is not None:
            found += [ex] + [m for m in (neighbour(ex, rng) for _ in range(3)) if m is not None]
    return found


def nanp_cells(rng, other):
    codes = sorted({p[1:4] for p in TIMEZONE_DATA if p.startswith("1") and len(p) >= 4})
    cells = []
    for a in codes:
        x = "%d%02d" % (rng.randint(2, 9), rng.randint(0, 99))
        s = "%04d" % rng.randint(0, 9999)
        forms = (
            ["%s%s%s" % (a, x, s), "1.%s.%s.%s" % (a, x, s), "+1 (%s) %s %s" % (a, x, s)]
            if other
            else ["(%s) %s-%s" % (a, x, s), "%s-%s-%s" % (a, x, s), "1 %s %s %s" % (a, x, s),
                  "+1%s%s%s" % (a, x, s), "%s.%s.%s" % (a, x, s)]
        )
        rng.shuffle(forms)
        cells += forms[: rng.randint(1, 2)]
    return cells


def prefix_cells(rng):
    """A valid number under every prefix of the time-zone map outside North America, when one is found."""
    cells = []
    for p in sorted(TIMEZONE_DATA):
        if p.startswith("1"):
            continue
        for _ in range(40):
            digits = p + "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(max(0, 7 - len(p)), 13 - len(p))))
            try:
                n = pn.parse("+" + digits, None)
            except pn.NumberParseException:
                continue
            if pn.is_valid_number(n):
                cells.append(pn.format_number(n, F.INTERNATIONAL if rng.random() < 0.5 else F.E164))
                break
    return cells


JUNK = [
    "n/a", "none", "12", "123456", "0000000000", "1111111111", "4.15555E+09", "1,5E+10", "+1 555 0100",
    "646-555-10O1", "1-800-FLOWERS", "(415) 555-2671 x123", "+44 20 7946 0018 ext. 9", "415-555-2671 extension 45",
    "+1 415 555 2671#77", "++44 20 7946 0018", "+", "-", "()", "tel:+1-415-555-2671", "+1 (415) 555-267",
    "+1 415 555 26711", "+44", "+49 0", "00", "011", "+999 1234567", "+0 123 4567", "555-0100", "911", "112",
    # Ranges that 9.0.42 judges differently from 9.0.41 or 9.0.43: they pin the metadata release.
    "+61 496 012 345", "+49 1541 0123456", "+40 600 123 456", "+40 621 234 567", "+7 800 555 3535", "+7 808 123 4567",
    "+1 273 201 1234", "+1 274 201 1234",
]


def verdict(cell, region):
    try:
        n = pn.parse(cell, region)
    except pn.NumberParseException:
        return "-", "", "", ""
    e164 = pn.format_number(n, F.E164)
    if not pn.is_valid_number(n):
        return "0", e164, "", ""
    t = pn.number_type(n)
    zones = tz.time_zones_for_number(n)
    where = "geo" if is_number_type_geographical(t, n.country_code) else "country"
    return "1", e164, TYPE_NAMES[t], where + ":" + "&".join(zones)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spellings", choices=["main", "other"], default="main")
    args = ap.parse_args()
    if pn.__version__ != RELEASE:
        sys.exit(f"phonenumbers {pn.__version__} is not {RELEASE}, the crate's metadata release")
    rng = random.Random(args.seed)
    other = args.spellings == "other"
    cells = []
    for n in numbers(rng, other):
        cells += spellings(n, rng, other)
    cells += nanp_cells(rng, other)
    cells += prefix_cells(rng)
    cells += JUNK
    for _ in range(100):
        cells.append("".join(rng.choice("0123456789") for _ in range(rng.randint(3, 17))))
        cells.append("+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 17))))
    seen = set()
    unique = []
    for c in cells:
        if c not in seen and "\t" not in c and "\n" not in c:
            seen.add(c)
            unique.append(c)
    out = sys.stdout
    out.write(f"# libphonenumber {RELEASE} (phonenumbers {pn.__version__}), seed {args.seed}, "
              f"spellings {args.spellings}; scripts/phone-corpus.py. Data derived from libphonenumber, "
              "Apache-2.0 (see NOTICE).\n")
    out.write("region\tcell\tvalid\te164\ttype\tzones\n")
    zoned = set()
    for region in REGIONS:
        for c in unique:
            valid, e164, kind, zones = verdict(c, region)
            if zones and e164 in zoned:
                zones = "="
            elif zones:
                zoned.add(e164)
            out.write("\t".join((region, c, valid, e164, kind, zones)) + "\n")


if __name__ == "__main__":
    main()
