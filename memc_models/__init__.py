"""memc_models: MEMC-Net, MEMC-Net_s, MEMC-Net* and MEMC-Net_VE on memc_ops, the released
checkpoints, and the library the command-line programs (:mod:`memc_models.cli`) are built on.

Modules: :mod:`.memc_net` (the networks), :mod:`.memc_net_ve` (the enhancement network),
:mod:`.variants` (the one table of variants), :mod:`.checkpoint` (released and own checkpoints,
``load_model``, training state), :mod:`.classical` (the training-free path), :mod:`.enhancement`
(training-free enhancement), :mod:`.enhancement_eval` (its evaluation against the peers),
:mod:`.inference` (device, interpolators, enhancers), :mod:`.frames` (conversions and checks),
:mod:`.images` and :mod:`.video` (media files), :mod:`.atomic` (the one writer of every output),
:mod:`.streaming` (sources, sinks, scene cuts, the pairwise walk, sliding windows),
:mod:`.metrics`, :mod:`.datasets`, :mod:`.training`; :mod:`.errors` holds ``UserError``.
"""

import os as _os
import sys as _sys

# OpenMP's threads sleep when they wait, instead of spinning (libgomp's default): the programs run
# torch's threads beside DIS's and the pipeline's, and a spinning thread takes a core from them;
# on a shared CPU it stalls torch's own operations too (memc-interpolate at 1080p ran 2-3 times
# faster so on a loaded 2-core machine: README). libgomp reads this when torch is loaded, so it
# is set only where torch is not loaded yet (the programs import memc_models first), and never
# over a value of the user's.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import convert_original_state_dict, load_model, load_original_checkpoint
from .errors import UserError
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
from .memc_net_ve import MEMCNetVE, MEMCNetVEOutput, memc_net_ve
from .variants import VARIANTS

__all__ = [
    "MEMCNet",
    "MEMCNetConfig",
    "MEMCNetOutput",
    "MEMCNetVE",
    "MEMCNetVEOutput",
    "RELEASE_OPTIONS",
    "UserError",
    "VARIANTS",
    "convert_original_state_dict",
    "load_model",
    "load_original_checkpoint",
    "memc_net",
    "memc_net_s",
    "memc_net_star",
    "memc_net_ve",
    "release_padding",
]
