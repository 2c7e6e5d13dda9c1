"""The one table of MEMC-Net variants: the name the tools use (``--model``), the authors' name in
the released code and checkpoints, and our factory. Every other list of variants is read from it."""

from typing import Callable, Dict, NamedTuple, Tuple

from torch import nn

from .memc_net import memc_net, memc_net_s, memc_net_star
from .memc_net_ve import memc_net_ve

__all__ = ["ENHANCEMENT_VARIANTS", "Variant", "VARIANTS", "variant"]


class Variant(NamedTuple):
    name: str                     # as the tools name it: memc, memc_s, memc_star
    released: str                 # as the authors' code and checkpoints name it: MEMC_Net, ...
    build: Callable[[], nn.Module]  # our factory (memc_models.memc_net, ...)
    aliases: Tuple[str, ...] = ()   # other names, such as the released checkpoints' file names


#: The interpolation variants by their tools' name, in the order the tools list them.
VARIANTS: Dict[str, Variant] = {
    v.name: v for v in (
        Variant("memc", "MEMC_Net", memc_net),
        Variant("memc_s", "MEMC_Net_s", memc_net_s),
        Variant("memc_star", "MEMC_Net_star", memc_net_star),
    )
}

#: The 7-frame enhancement model; the released MEMC-Net_SR.pth, _DN.pth and _DB.pth share it.
ENHANCEMENT_VARIANTS: Dict[str, Variant] = {
    "memc_ve": Variant("memc_ve", "MEMC_Net_VE", memc_net_ve, aliases=("memc_net_sr", "memc_net_dn", "memc_net_db")),
}


def variant(name: str) -> Variant:
    """The variant under any of its spellings: the tools' (``memc_s``), the authors'
    (``MEMC_Net_s``, ``MEMC-Net*``, ``MEMC-Net_SR``) or our factory's (``memc_net_s``); case, '-'
    for '_' and '*' for '_star' do not matter. ValueError for another name."""
    if isinstance(name, Variant):
        return name
    key = str(name).strip().replace("-", "_").replace("*", "_star").lower()
    everything = (*VARIANTS.values(), *ENHANCEMENT_VARIANTS.values())
    for candidate in everything:
        if key in (candidate.name, candidate.released.lower(), candidate.build.__name__, *candidate.aliases):
            return candidate
    raise ValueError(
        f"variant must be one of {', '.join(v.released for v in everything)} (or "
        f"{', '.join(v.name for v in everything)} as the command-line tools name them, or "
        f"{', '.join(v.build.__name__ for v in everything)}, or MEMC_Net_SR, MEMC_Net_DN, MEMC_Net_DB "
        f"for the enhancement model); got {name!r}"
    )
