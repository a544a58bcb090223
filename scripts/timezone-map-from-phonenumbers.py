#!/usr/bin/env python3
"""Writes libphonenumber's resources/timezones/map_data.txt back from the `phonenumbers` package (PyPI), which
carries the same table as Python (`phonenumbers.tzdata`), for releases whose repository tag is not at hand:

    python3 -m venv /tmp/pn && /tmp/pn/bin/pip install phonenumbers==9.0.42
    /tmp/pn/bin/python scripts/timezone-map-from-phonenumbers.py > /tmp/map_data.txt
    scripts/update-timezone-map.sh /tmp/map_data.txt 9.0.42 "phonenumbers 9.0.42 (PyPI), phonenumbers/tzdata"

The package keeps the file's lines in their order, so the output is the upstream file: for 9.0.34 it is byte for
byte the map_data.txt of libphonenumber's commit 6e46509b (SHA-256 67b99616…).
"""

import sys

import phonenumbers
from phonenumbers.tzdata import TIMEZONE_DATA

HEADER = """# Copyright (C) 2012 The Libphonenumber Authors

# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at

# http://www.apache.org/licenses/LICENSE-2.0

# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# Generated from:
# Internal statistics data (2018-06-12).

"""

out = sys.stdout
out.write(HEADER)
for prefix, zones in TIMEZONE_DATA.items():
    out.write(prefix + "|" + "&".join(zones) + "\n")
print(f"phonenumbers {phonenumbers.__version__}: {len(TIMEZONE_DATA)} prefixes", file=sys.stderr)
