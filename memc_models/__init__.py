"""memc_models: MEMC-Net, MEMC-Net_s and MEMC-Net* on memc_ops, and the released checkpoints."""

from .checkpoint import convert_original_state_dict, load_original_checkpoint
from .memc_net import (
    RELEASE_OPTIONS,
    MEMCNet,
    MEMCNetConfig,
    MEMCNetOutput,
    memc_net,
    memc_net_s,
    memc_net_star,
    release_padding,
)

__all__ = [
    "MEMCNet",
    "MEMCNetConfig",
    "MEMCNetOutput",
    "RELEASE_OPTIONS",
    "convert_original_state_dict",
    "load_original_checkpoint",
    "memc_net",
    "memc_net_s",
    "memc_net_star",
    "release_padding",
]
