"""Training MEMC-Net: DAIN's released recipe (the authors released none for MEMC-Net) as plain
functions of (model, batch, optimizer, ...), so that a program, a test or a distributed wrapper
(``DistributedDataParallel`` around the model) can drive them.

Adamax (0.9, 0.999) with learning rate 2e-3 for the kernel, mask and context networks, 2e-5
(x0.01) for the flow network and 1e-3 for the post-processing network, no weight decay,
ReduceLROnPlateau (factor 0.2, patience 5) on the validation loss, the Charbonnier loss
sqrt(x^2 + 1e-6^2) on the final frame.
"""

import contextlib
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .checkpoint import load_model
from .errors import UserError
from .metrics import psnr
from .variants import VARIANTS

__all__ = ["AMP_CHOICES", "LEARNING_RATES", "amp_dtype", "autocast", "build_model", "build_optimizer",
           "build_scheduler", "charbonnier", "grad_scaler", "parameter_groups", "train_epoch", "train_step", "validate",
           "validation_sums"]

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


#: What ``--amp`` may ask for: "auto" is bfloat16 where the device supports it, else float16.
AMP_CHOICES = ("auto", "bfloat16", "float16")


def amp_dtype(device: torch.device, amp: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype of ``--amp`` on ``device``: None without it (float32); for "auto",
    bfloat16 where the device supports it (CPUs, NVIDIA GPUs from Ampere on), else float16."""
    if amp is None:
        return None
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)} or None; got {amp!r}")
    if amp == "auto":
        supported = device.type != "cuda" or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if supported else torch.float16
    return getattr(torch, amp)


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Autocast to ``dtype`` on ``device`` (float32, nothing, for None). The adaptive-warp and
    projection ops run in the frames' dtype inside it (float32 for float32 frames)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: Optional[torch.dtype]) -> "torch.amp.GradScaler":
    """A gradient scaler, enabled under float16 autocast alone (whose small gradients underflow;
    bfloat16 has float32's range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def _unpack(batch: Sequence[Tensor], device: torch.device) -> Tuple[Tensor, Tensor, Tensor, Union[float, Tensor]]:
    """(frame0, middle, frame1, t) on ``device`` from a triplet batch (t = 0.5) or a septuplet
    batch, whose fourth entry holds each sample's t."""
    if len(batch) not in (3, 4):
        raise ValueError(f"a batch must be (frame0, middle, frame1) or (frame0, middle, frame1, t); "
                         f"got {len(batch)} entries")
    frame0, middle, frame1 = (x.to(device, non_blocking=True) for x in batch[:3])
    t = batch[3].to(device, non_blocking=True) if len(batch) == 4 else 0.5
    return frame0, middle, frame1, t


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Sequence[Tensor],
               device: torch.device = torch.device("cpu"), amp: Optional[torch.dtype] = None,
               scaler: Optional["torch.amp.GradScaler"] = None) -> float:
    """One optimisation step on ``(frame0, middle, frame1)`` (at t = 0.5) or
    ``(frame0, middle, frame1, t)``, under autocast to ``amp`` (see :func:`amp_dtype`); returns
    the loss. ``model`` may be wrapped in DistributedDataParallel: the loss is this process's
    batch mean, and the gradients are averaged over the processes."""
    frame0, middle, frame1, t = _unpack(batch, device)
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        output = model(frame0, frame1, t)
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
def validation_sums(model: nn.Module, loader: Iterable[Sequence[Tensor]], device: torch.device = torch.device("cpu"),
                    amp: Optional[torch.dtype] = None, progress: bool = False) -> Tuple[float, float, int]:
    """(sum of the Charbonnier losses, sum of the PSNRs in dB on 8-bit levels, number of samples)
    over the loader's samples: sums, so that the shares of several processes add up to the
    whole set's (:func:`memc_models.distributed.all_reduce_sums`)."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    loss_sum, psnr_sum, count = 0.0, 0.0, 0
    try:
        for batch in tqdm(loader, desc="validating", leave=False, disable=not progress, dynamic_ncols=True):
            frame0, middle, frame1, t = _unpack(batch, device)
            with autocast(device, amp):
                output = model(frame0, frame1, t)
            output = output.float()
            for k in range(output.shape[0]):
                loss_sum += float(charbonnier(output[k], middle[k]))
                psnr_sum += min(psnr(output[k].clamp(0, 1), middle[k]), 100.0)  # identical frames: cap inf
                count += 1
    finally:
        model.train(was_training)
    return loss_sum, psnr_sum, count


def validate(model: nn.Module, loader: Iterable[Sequence[Tensor]], device: torch.device = torch.device("cpu"),
             amp: Optional[torch.dtype] = None, progress: bool = False) -> Tuple[float, float]:
    """(mean Charbonnier loss, mean PSNR in dB on 8-bit levels) over the loader's samples."""
    loss_sum, psnr_sum, count = validation_sums(model, loader, device, amp, progress)
    if count == 0:
        raise ValueError("validate: the loader gave no samples")
    return loss_sum / count, psnr_sum / count


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Sequence[Tensor]],
                device: torch.device = torch.device("cpu"), amp: Optional[torch.dtype] = None,
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
