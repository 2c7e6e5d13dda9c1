"""The one table of MEMC-Net variants: the name the tools use (``--model``), the authors' name in
the released code and checkpoints, and our factory. Every other list of variants is read from it."""

from typing import Callable, Dict, NamedTuple

from .memc_net import MEMCNet, memc_net, memc_net_s, memc_net_star

__all__ = ["Variant", "VARIANTS", "variant"]


class Variant(NamedTuple):
    name: str                     # as the tools name it: memc, memc_s, memc_star
    released: str                 # as the authors' code and checkpoints name it: MEMC_Net, ...
    build: Callable[[], MEMCNet]  # our factory (memc_models.memc_net, ...)


#: The variants by their tools' name, in the order the tools list them.
VARIANTS: Dict[str, Variant] = {
    v.name: v for v in (
        Variant("memc", "MEMC_Net", memc_net),
        Variant("memc_s", "MEMC_Net_s", memc_net_s),
        Variant("memc_star", "MEMC_Net_star", memc_net_star),
    )
}


def variant(name: str) -> Variant:
    """The variant under any of its spellings: the tools' (``memc_s``), the authors'
    (``MEMC_Net_s``, ``MEMC-Net*``) or our factory's (``memc_net_s``); case, '-' for '_' and '*'
    for '_star' do not matter. ValueError for another name."""
    if isinstance(name, Variant):
        return name
    key = str(name).strip().replace("-", "_").replace("*", "_star").lower()
    for candidate in VARIANTS.values():
        if key in (candidate.name, candidate.released.lower(), candidate.build.__name__):
            return candidate
    raise ValueError(
        f"variant must be one of {', '.join(v.released for v in VARIANTS.values())} (or "
        f"{', '.join(VARIANTS)} as the command-line tools name them, or "
        f"{', '.join(v.build.__name__ for v in VARIANTS.values())}); got {name!r}"
    )
