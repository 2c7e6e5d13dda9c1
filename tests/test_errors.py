"""How messages are worded (memc_models.errors): the first few of a long list, and how many more."""

import pytest

from memc_models.errors import first_few


@pytest.mark.parametrize("items, shown, expected", [
    ([], 3, ""),
    (["a"], 3, "a"),
    (["a", "b", "c"], 3, "a, b, c"),
    (["a", "b", "c", "d", "e"], 3, "a, b, c and 2 more"),
    (iter(["a", "b"]), 1, "a and 1 more"),
])
def test_first_few_lists_the_first_items_and_counts_the_rest(items, shown, expected):
    assert first_few(items, shown) == expected


def test_first_few_takes_another_separator():
    assert first_few(["x: no such file", "y: damaged", "z: empty"], 2, "; ") == "x: no such file; y: damaged and 1 more"
