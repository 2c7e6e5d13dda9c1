"""Training MEMC-Net: DAIN's released recipe (the authors released none for MEMC-Net) as plain
functions of (model, batch, optimizer, ...), so that a program, a test or a distributed wrapper
(``DistributedDataParallel`` around the model) can drive them.

Adamax (0.9, 0.999) with learning rate 2e-3 for the kernel, mask and context networks, 2e-5
(x0.01) for the flow network and 1e-3 for the post-processing network, no weight decay,
ReduceLROnPlateau (factor 0.2, patience 5) on the validation loss, the Charbonnier loss
sqrt(x^2 + 1e-6^2) on the final frame.
"""

import contextlib
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import load_model
from .errors import UserError
from .metrics import psnr
from .variants import VARIANTS

__all__ = ["LEARNING_RATES", "autocast", "build_model", "build_optimizer", "build_scheduler", "charbonnier",
           "parameter_groups", "train_epoch", "train_step", "validate"]

#: Base learning rate of each sub-network of :class:`memc_models.MEMCNet` (DAIN's train.py:
#: lr 2e-3, flow x0.01, post-processing ("rectify") 1e-3); ``--lr`` scales them all.
LEARNING_RATES: Dict[str, float] = {
    "flow_net": 2e-3 * 0.01,
    "kernel_net": 2e-3,
    "mask_net": 2e-3,
    "context_net": 2e-3,
    "post_net": 1e-3,
}


def build_model(name: str, init_checkpoint: Optional[str] = None) -> nn.Module:
    """A ``--model`` (memc, memc_s, memc_star), freshly initialised or from a checkpoint (ours or
    the authors'), in train mode on the CPU."""
    if name not in VARIANTS:
        raise UserError(f"--model must be one of {', '.join(VARIANTS)}; got {name!r}")
    if init_checkpoint is not None:
        model = load_model(init_checkpoint, name, torch.device("cpu"), option="--init-checkpoint")
    else:
        model = VARIANTS[name].build()
    return model.train()


def parameter_groups(model: nn.Module, lr_scale: float = 1.0) -> List[dict]:
    """Optimizer parameter groups, one per sub-network of the model, at
    ``LEARNING_RATES[name] * lr_scale``; each group carries its ``name``."""
    groups = []
    for name, module in model.named_children():
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        if name not in LEARNING_RATES:
            raise ValueError(f"no learning rate for the sub-network {name!r}; known: {', '.join(LEARNING_RATES)}")
        groups.append({"name": name, "params": params, "lr": LEARNING_RATES[name] * lr_scale})
    grouped = {id(p) for group in groups for p in group["params"]}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in grouped]
    if stray:
        raise ValueError(f"parameters outside the sub-networks: {', '.join(stray)}")
    return groups


def build_optimizer(model: nn.Module, lr_scale: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.Adamax(parameter_groups(model, lr_scale), betas=(0.9, 0.999), weight_decay=0.0)


def build_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, patience=5)


def charbonnier(output: Tensor, target: Tensor, epsilon: float = 1e-6) -> Tensor:
    """mean(sqrt((output - target)^2 + epsilon^2)), computed in float32."""
    difference = output.float() - target.float()
    return torch.sqrt(difference * difference + epsilon * epsilon).mean()


def autocast(device: torch.device, amp: bool):
    """bfloat16 (float16 where unsupported) autocast on CUDA with ``amp``; else nothing."""
    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Sequence[Tensor],
               device: torch.device = torch.device("cpu"), amp: bool = False,
               scaler: Optional["torch.amp.GradScaler"] = None) -> float:
    """One optimisation step on ``(frame0, middle, frame1)``; returns the loss."""
    frame0, middle, frame1 = (x.to(device, non_blocking=True) for x in batch)
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        output = model(frame0, frame1, 0.5)
    loss = charbonnier(output, middle)
    if not torch.isfinite(loss):
        # detach: float() of a tensor that requires grad warns
        raise FloatingPointError(f"the training loss is {float(loss.detach())}; lower --lr or turn off --amp")
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def validate(model: nn.Module, loader: Iterable[Sequence[Tensor]], device: torch.device = torch.device("cpu"),
             amp: bool = False, progress: bool = False) -> Tuple[float, float]:
    """(mean Charbonnier loss, mean PSNR in dB on 8-bit levels) over the loader's triplets."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    losses, psnrs = [], []
    try:
        for frame0, middle, frame1 in tqdm(loader, desc="validating", leave=False, disable=not progress,
                                           dynamic_ncols=True):
            frame0, middle, frame1 = frame0.to(device), middle.to(device), frame1.to(device)
            with autocast(device, amp):
                output = model(frame0, frame1, 0.5)
            output = output.float()
            for k in range(output.shape[0]):
                losses.append(float(charbonnier(output[k], middle[k])))
                psnrs.append(min(psnr(output[k].clamp(0, 1), middle[k]), 100.0))  # identical frames: cap inf
    finally:
        model.train(was_training)
    return float(np.mean(losses)), float(np.mean(psnrs))


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Sequence[Tensor]],
                device: torch.device = torch.device("cpu"), amp: bool = False,
                scaler: Optional["torch.amp.GradScaler"] = None,
                on_step: Optional[Callable[[float], None]] = None) -> List[float]:
    """:func:`train_step` on each batch in turn (the model in train mode); returns the losses.
    ``on_step(loss)`` is called after each step (for a progress bar)."""
    model.train()
    losses = []
    for batch in batches:
        losses.append(train_step(model, optimizer, batch, device, amp, scaler))
        if on_step is not None:
            on_step(losses[-1])
    return losses
