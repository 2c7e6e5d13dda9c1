"""The one table of variants (memc_models.variants) and the names it answers to."""

import pytest

import memc_models
from memc_models.variants import VARIANTS, variant


def test_the_table_lists_each_variant_with_its_factory_and_released_name():
    assert list(VARIANTS) == ["memc", "memc_s", "memc_star"]
    assert [v.released for v in VARIANTS.values()] == ["MEMC_Net", "MEMC_Net_s", "MEMC_Net_star"]
    assert [v.build for v in VARIANTS.values()] == [memc_models.memc_net, memc_models.memc_net_s,
                                                    memc_models.memc_net_star]


@pytest.mark.parametrize("name", ["memc_star", "MEMC_Net_star", "MEMC-Net*", "memc_net_star", " Memc_Star "])
def test_every_spelling_finds_the_variant(name):
    assert variant(name) is VARIANTS["memc_star"]


def test_another_name_is_a_value_error_listing_the_names():
    with pytest.raises(ValueError, match="variant must be one of MEMC_Net, MEMC_Net_s, MEMC_Net_star .*got 'memc_ve'"):
        variant("memc_ve")
