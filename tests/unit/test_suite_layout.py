"""The test tree itself: rules pytest enforces only at collection time, checked early."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_module_has_a_basename_of_its_own() -> None:
    # Without __init__.py files pytest imports test modules by basename: two files with one
    # name stop the whole collection ("import file mismatch"), so the suite runs nothing.
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
