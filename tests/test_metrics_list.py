"""collector.metrics is the one list of families: the README's metrics table follows it."""

from __future__ import annotations

import re
from pathlib import Path

from collector.metrics import ALL, BY_NAME

README = Path(__file__).resolve().parent.parent / "README.md"


def _table_names() -> set[str]:
    """Every `contactcenter_…` named in the first cell of a README table row."""
    names: set[str] = set()
    for cell in re.findall(r"^\|([^|]*)\|", README.read_text(), re.M):
        names |= set(re.findall(r"`(contactcenter_\w+)`", cell))
    return names


def test_every_declared_family_has_a_readme_row_and_no_row_is_undeclared() -> None:
    declared = {family.exposed_name for family in ALL}
    rows = _table_names()
    assert sorted(declared - rows) == []  # a family without a row in the metrics table
    assert sorted(rows - declared) == []  # a row for a family the exporter never writes


def test_families_are_declared_once_with_base_units_and_no_forbidden_labels() -> None:
    assert len(BY_NAME) == len(ALL)
    for family in ALL:
        assert not family.name.endswith("_total"), family  # counters get _total when written
        assert not {"type", "env", "region", "customer"} & set(family.labels), family
        assert family.help.endswith("."), family
