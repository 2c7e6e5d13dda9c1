"""memc_ops: MEMC-Net's adaptive warping and flow projection layers, and a bicubic warp, as PyTorch
custom ops.

The ops live under ``torch.ops.memc``; this package gives them typed Python wrappers, autograd,
fake (meta) kernels for ``torch.compile``, ``nn.Module`` wrappers and a pure-PyTorch reference
(:mod:`memc_ops.reference`) that states their definitions.
"""

import torch

from . import _C  # noqa: F401  (loads the kernels and registers torch.ops.memc.*)
from . import reference  # noqa: F401  (memc_ops.reference after `import memc_ops`, as the docs use it)
from .adaptive_warp import AdaptiveWarp, adaptive_warp
from .bicubic_warp import BicubicWarp, bicubic_kernel, bicubic_warp
from .flow_projection import FlowProjection, flow_projection, project_to_time

__all__ = [
    "AdaptiveWarp", "adaptive_warp", "BicubicWarp", "bicubic_kernel", "bicubic_warp", "cuda_kernels_built",
    "FlowProjection", "flow_projection", "project_to_time",
]


def cuda_kernels_built() -> bool:
    """True when this build of memc_ops contains the CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("memc::adaptive_warp", "CUDA")
