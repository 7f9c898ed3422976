"""Refactors change no output: every export of the matrix in tests/output_record.py (five
architectures x writers x plan/encoding options x writer options, and golden vectors) has the
sha256 recorded in tests/data/output_sha256.json by the code before the change.

A deliberate change of output re-records with `python tests/output_record.py --write` and says
why in its commit."""

from __future__ import annotations

import json

import pytest

import output_record as rec

RECORD = json.loads(rec.RECORD.read_text())
GROUPS = sorted({case.split("/")[0] if not case.startswith("golden/") else "golden" for case in RECORD})


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_exports_match_the_record(group):
    wanted = {c for c in RECORD if (c.split("/")[0] == group and not c.startswith("golden/"))
              or (group == "golden" and c.startswith("golden/"))}  # fmt: skip
    assert wanted, group
    got = rec.compute(wanted)
    assert set(got) == wanted
    changed = sorted(c for c in wanted if got[c] != RECORD[c])
    assert not changed, f"{len(changed)} case(s) differ from the record, first: {changed[0]}: " \
                        f"{got[changed[0]]} != {RECORD[changed[0]]}"
