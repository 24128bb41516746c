"""The plug-in boundary holds in both directions (issue 8, deliverable 1 and 2).

adapters/ never imports collector/; a vendor module imports other adapter modules only
through the shared ones (base, fields, http, filetail); collector/ imports only the
contract (adapters.base), so the webhook router and the runtime know no vendor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = {"adapters", "adapters.base", "adapters.fields", "adapters.http", "adapters.filetail"}


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` names, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "adapters":  # from adapters import fields
                found.update(f"adapters.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_adapters_import_no_collector_and_other_adapters_only_through_shared_modules(
    path: Path,
) -> None:
    modules = imported_modules(path)
    assert not {m for m in modules if m == "collector" or m.startswith("collector.")}
    assert {m for m in modules if m.startswith("adapters.")} <= SHARED


@pytest.mark.parametrize("path", sorted((ROOT / "collector").glob("*.py")), ids=lambda p: p.name)
def test_collector_imports_only_the_contract(path: Path) -> None:
    modules = imported_modules(path)
    assert {m for m in modules if m == "adapters" or m.startswith("adapters.")} <= {
        "adapters.base"}


def test_the_fixture_plugin_imports_only_the_contract() -> None:
    plugin = ROOT / "tests" / "fixtures" / "thirdparty_adapter" / "demo_contacts" / "__init__.py"
    modules = imported_modules(plugin)
    assert {m for m in modules if m.startswith(("adapters", "collector"))} == {
        "adapters.base", "adapters.fields"}


def test_record_fields_added_after_the_first_release_have_defaults() -> None:
    # A plug-in written against the first contract builds records with these fields only;
    # every field added since must have a default so that code keeps working.
    from adapters.base import Batch, Contact, Rejection

    first = {
        Contact: ("id", "channel", "direction", "queue", "start", "handled", "handle_seconds",
                  "talk_seconds", "billable_seconds"),
        Rejection: ("reason", "line"),
        Batch: ("contacts", "rejections", "position"),
    }
    for record, required in first.items():
        assert record._fields[: len(required)] == required, record.__name__
        assert set(record._fields) - set(required) <= set(record._field_defaults), record.__name__
    old_style = Contact("c-1", "chat", "inbound", "other", 0.0, True, 1.0, 1.0, 0.0)
    assert old_style.outcome == "" and old_style.customer is None
