"""memc_models: MEMC-Net, MEMC-Net_s, MEMC-Net* and MEMC-Net_VE on memc_ops, and the released checkpoints."""

from .checkpoint import convert_original_state_dict, load_original_checkpoint
from .memc_net import MEMCNet, MEMCNetConfig, MEMCNetOutput, memc_net, memc_net_s, memc_net_star
from .memc_net_ve import MEMCNetVE, MEMCNetVEOutput, memc_net_ve

__all__ = [
    "MEMCNet",
    "MEMCNetConfig",
    "MEMCNetOutput",
    "MEMCNetVE",
    "MEMCNetVEOutput",
    "convert_original_state_dict",
    "load_original_checkpoint",
    "memc_net",
    "memc_net_s",
    "memc_net_star",
    "memc_net_ve",
]
