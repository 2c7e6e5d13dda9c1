"""``memc-train``: train MEMC-Net, MEMC-Net_s or MEMC-Net* on Vimeo90K triplets.

    memc-train vimeo_triplet --model memc_s --out runs/memc_s
    memc-train vimeo_triplet --model memc_star --init-checkpoint MEMC-Net_star.pth --out runs/ft
    memc-train vimeo_triplet --resume runs/memc_s/last.pt --out runs/memc_s --epochs 120

The authors released no training code for MEMC-Net; the defaults follow DAIN's released
``train.py`` (same authors, same building blocks): Adamax (0.9, 0.999) with learning rate 2e-3
for the kernel, mask and context networks, 2e-5 (x0.01) for the flow network and 1e-3 for the
post-processing network, no weight decay, ReduceLROnPlateau (factor 0.2, patience 5) on the
validation loss, the Charbonnier loss sqrt(x^2 + 1e-6^2) on the final frame, batch 1, 100 epochs,
full 256x448 triplets with random horizontal and vertical flips and temporal order swap.

Each epoch writes ``OUT/last.pt`` (model, optimizer, scheduler, epoch, config: for ``--resume``),
``OUT/best.pt`` (the model's state dict alone, when the validation PSNR improves: load it with
``memc-interpolate --checkpoint OUT/best.pt --model ...``) and a line of ``OUT/log.csv``. A new run
refuses an ``OUT`` that holds one: continue it with ``--resume OUT/last.pt`` (log.csv grows) or
replace it with ``--overwrite``. Resuming into a new ``OUT`` copies the run's log.csv and best.pt
there once the first epoch validates; resuming into an ``OUT`` holding another run is refused.
"""

import argparse
import contextlib
import csv
import itertools
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .interpolate import MODELS, load_model, pick_device
from .io import UserError, read_image

__all__ = [
    "LEARNING_RATES",
    "VimeoTriplets",
    "augment_triplet",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "charbonnier",
    "load_training_state",
    "main",
    "parameter_groups",
    "save_training_state",
    "train_step",
    "triplet_folders",
    "validate",
]

#: Base learning rate of each sub-network of :class:`memc_models.MEMCNet` (DAIN's train.py:
#: lr 2e-3, flow x0.01, post-processing ("rectify") 1e-3); ``--lr`` scales them all.
LEARNING_RATES: Dict[str, float] = {
    "flow_net": 2e-3 * 0.01,
    "kernel_net": 2e-3,
    "mask_net": 2e-3,
    "context_net": 2e-3,
    "post_net": 1e-3,
}

_FRAMES = ("im1.png", "im2.png", "im3.png")


# ----------------------------------------------------------------------------------------------
# Data


def _is_triplet(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in _FRAMES)


def _read_list(root: str, list_name: str) -> Optional[List[str]]:
    path = os.path.join(root, list_name)
    if not os.path.isfile(path):
        return None
    base = os.path.join(root, "sequences") if os.path.isdir(os.path.join(root, "sequences")) else root
    with open(path) as handle:
        folders = [os.path.normpath(os.path.join(base, line.strip())) for line in handle if line.strip()]
    missing = [folder for folder in folders if not _is_triplet(folder)]
    if missing:
        raise UserError(
            f"{path} lists {len(missing)} folder(s) without im1.png, im2.png, im3.png, e.g. {missing[0]}"
        )
    return folders


def triplet_folders(root: str, split: str = "train") -> Tuple[List[str], bool]:
    """The triplet folders of ``split`` (``"train"`` or ``"test"``) under a Vimeo90K root.

    With ``tri_trainlist.txt`` / ``tri_testlist.txt`` (entries ``XXXXX/YYYY`` under
    ``root/sequences`` or ``root``) the lists are used. Without the list of ``split``, training
    uses every folder holding im1.png, im2.png and im3.png that the test list does not name, and
    validation uses the training folders. Returns (folders, from_list).
    """
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    listed = _read_list(root, f"tri_{split}list.txt")
    if listed is not None:
        if not listed:
            raise UserError(f"{os.path.join(root, f'tri_{split}list.txt')} is empty")
        return listed, True
    if split == "test":
        return triplet_folders(root, "train")[0], False
    excluded = set(_read_list(root, "tri_testlist.txt") or ())
    folders = sorted(
        os.path.normpath(dirpath)
        for dirpath, _, files in os.walk(root)
        if all(name in files for name in _FRAMES) and os.path.normpath(dirpath) not in excluded
    )
    if not folders:
        raise UserError(f"{root}: no Vimeo90K triplets (folders with im1.png, im2.png, im3.png, or tri_trainlist.txt)")
    return folders, False


def augment_triplet(frames: Tensor, hflip: bool, vflip: bool, swap: bool) -> Tensor:
    """(3 frames, C, H, W) -> the same triplet flipped left-right and/or up-down, and with the
    first and last frame exchanged (the middle frame is still their midpoint)."""
    if hflip:
        frames = frames.flip(-1)
    if vflip:
        frames = frames.flip(-2)
    if swap:
        frames = frames.flip(0)
    return frames


class VimeoTriplets(Dataset):
    """Vimeo90K triplets as ``(frame0, middle, frame1)``, each a (3, H, W) float32 RGB tensor in [0, 1].

    Args:
        root: the Vimeo90K triplet folder (``sequences/`` and the lists), or a folder of triplet
            folders.
        split: ``"train"`` or ``"test"`` (see :func:`triplet_folders`).
        crop: (height, width) of a crop taken at the same place in all three frames: random with
            ``augment``, centred without; None for the full frames.
        augment: random crop position, horizontal and vertical flips and temporal order swap,
            each flip and the swap with probability 1/2 (drawn from torch's generator, so
            ``torch.manual_seed`` and DataLoader workers seed them).
        limit: use only the first ``limit`` triplets.
    """

    def __init__(self, root: str, split: str = "train", crop: Optional[Tuple[int, int]] = None,
                 augment: bool = False, limit: Optional[int] = None):
        self.folders, self.from_list = triplet_folders(root, split)
        if limit is not None:
            self.folders = self.folders[:limit]
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.augment = augment
        if self.crop is not None:
            if min(self.crop) < 1:
                raise UserError(f"--crop must be two positive sizes H W; got {self.crop[0]} {self.crop[1]}")
            height, width = self.frame_size(0)
            if self.crop[0] > height or self.crop[1] > width:
                raise UserError(
                    f"--crop {self.crop[0]} {self.crop[1]} is larger than the frames of {self.folders[0]} "
                    f"({height}x{width}, H x W)"
                )

    def frame_size(self, index: int) -> Tuple[int, int]:
        """(H, W) of triplet ``index``."""
        return tuple(read_image(os.path.join(self.folders[index], _FRAMES[0])).shape[-2:])

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor]:
        folder = self.folders[index]
        images = [read_image(os.path.join(folder, name))[0] for name in _FRAMES]
        if any(image.shape != images[0].shape for image in images):
            raise UserError(f"{folder}: the three frames differ in size: {[tuple(i.shape[1:]) for i in images]}")
        frames = torch.stack(images)
        height, width = frames.shape[-2:]
        if self.crop is not None:
            crop_h, crop_w = self.crop
            if crop_h > height or crop_w > width:
                raise UserError(f"{folder}: frames of {height}x{width} (H x W) are smaller than --crop {crop_h} {crop_w}")
            if self.augment:
                top = int(torch.randint(height - crop_h + 1, ()))
                left = int(torch.randint(width - crop_w + 1, ()))
            else:
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
            frames = frames[..., top : top + crop_h, left : left + crop_w]
        if self.augment:
            hflip, vflip, swap = (torch.rand(3) < 0.5).tolist()
            frames = augment_triplet(frames, hflip, vflip, swap)
        frames = frames.contiguous()
        return frames[0], frames[1], frames[2]


# ----------------------------------------------------------------------------------------------
# Model, optimisation, loss


def build_model(name: str, init_checkpoint: Optional[str] = None) -> nn.Module:
    """A ``--model`` (memc, memc_s, memc_star), freshly initialised or from a checkpoint (ours or
    the authors'), in train mode on the CPU."""
    import memc_models

    if name not in MODELS:
        raise UserError(f"--model must be one of {', '.join(sorted(MODELS))}; got {name!r}")
    if init_checkpoint is not None:
        model = load_model(init_checkpoint, name, torch.device("cpu"), option="--init-checkpoint")
    else:
        model = getattr(memc_models, MODELS[name][0])()
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


def _autocast(device: torch.device, amp: bool):
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
    with _autocast(device, amp):
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
def validate(model: nn.Module, loader: DataLoader, device: torch.device = torch.device("cpu"),
             amp: bool = False, progress: bool = False) -> Tuple[float, float]:
    """(mean Charbonnier loss, mean PSNR in dB on 8-bit levels) over the loader's triplets."""
    from tqdm import tqdm

    from .evaluate import psnr

    was_training = model.training
    model.eval()
    losses, psnrs = [], []
    try:
        for frame0, middle, frame1 in tqdm(loader, desc="validating", leave=False, disable=not progress,
                                           dynamic_ncols=True):
            frame0, middle, frame1 = frame0.to(device), middle.to(device), frame1.to(device)
            with _autocast(device, amp):
                output = model(frame0, frame1, 0.5)
            output = output.float()
            for k in range(output.shape[0]):
                losses.append(float(charbonnier(output[k], middle[k])))
                psnrs.append(min(psnr(output[k].clamp(0, 1), middle[k]), 100.0))  # identical frames: cap inf
    finally:
        model.train(was_training)
    return float(np.mean(losses)), float(np.mean(psnrs))


def save_training_state(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                        epoch: int, config: dict, best_psnr: float = -math.inf, scaler=None) -> None:
    """Writes ``{"model", "optimizer", "scheduler", "epoch", "config", "best_psnr"}`` (``epoch``: the
    number of completed epochs; plus ``"scaler"`` under float16 autocast) atomically, loadable with
    ``torch.load(weights_only=True)``."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "config": dict(config),
        "best_psnr": float(best_psnr),
    }
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    temporary = path + ".tmp"
    torch.save(state, temporary)
    os.replace(temporary, path)


def _read_training_state(path: str) -> dict:
    """The dict in a memc-train last.pt, checked for the entries :func:`save_training_state` writes."""
    if not os.path.isfile(path):
        raise UserError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"--resume {path}: cannot read it as a PyTorch checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "epoch"} <= set(state):
        raise UserError(f"--resume {path}: not a memc-train last.pt (expected model, optimizer, scheduler, epoch)")
    return state


def _mismatch(saved: dict, model: nn.Module) -> str:
    """How the state dict ``saved`` differs from ``model``'s: missing, unexpected and reshaped
    entries, each counted with an example (torch's own message starts with a line that names none)."""
    if not isinstance(saved, dict):
        return f"its model entry is a {type(saved).__name__}, not a state dict"
    own = model.state_dict()
    parts = []
    missing = [name for name in own if name not in saved]
    unexpected = [name for name in saved if name not in own]
    reshaped = [name for name in own if name in saved and hasattr(saved[name], "shape")
                and tuple(saved[name].shape) != tuple(own[name].shape)]
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if reshaped:
        name = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {name}: {tuple(saved[name].shape)} saved, "
                     f"{tuple(own[name].shape)} in the model)")
    return ", ".join(parts) if parts else "its weights do not load into it"


def _restore_training_state(path: str, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                            scheduler, scaler=None) -> None:
    """Loads a dict read by :func:`_read_training_state` (from ``path``) into the given objects."""
    saved_model = state.get("config", {}).get("model")
    trained_with = f" (it was trained with --model {saved_model})" if saved_model else ""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError, AttributeError):
        raise UserError(f"--resume {path} does not fit this model{trained_with}: "
                        f"{_mismatch(state['model'], model)}") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"--resume {path}: its optimizer state does not fit this model{trained_with}: "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and scaler.is_enabled() and "scaler" in state:
        scaler.load_state_dict(state["scaler"])


def load_training_state(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                        scaler=None) -> dict:
    """Restores what :func:`save_training_state` wrote into the given objects; returns the dict."""
    state = _read_training_state(path)
    _restore_training_state(path, state, model, optimizer, scheduler, scaler)
    return state


# ----------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memc-train",
        description="Train MEMC-Net (memc), MEMC-Net_s (memc_s) or MEMC-Net* (memc_star) on Vimeo90K triplets "
        "with the recipe of DAIN's released train.py (Adamax, per-network learning rates, ReduceLROnPlateau, "
        "Charbonnier loss, flips and temporal swap).",
        epilog="DATA is the Vimeo90K triplet folder (sequences/XXXXX/YYYY/im1.png im2.png im3.png with "
        "tri_trainlist.txt and tri_testlist.txt), or any folder of triplet folders (validated on the "
        "training triplets when it has no tri_testlist.txt).\n\n"
        "examples:\n  memc-train vimeo_triplet --model memc_s --out runs/memc_s\n"
        "  memc-train vimeo_triplet --model memc --init-checkpoint MEMC-Net_best.pth --lr 0.1 --out runs/ft\n"
        "  memc-train vimeo_triplet --model memc_s --resume runs/memc_s/last.pt --out runs/memc_s\n"
        "  memc-train vimeo_triplet --model memc_s --crop 128 128 --epochs 1 --max-steps 20 --val-limit 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", metavar="DATA", help="Vimeo90K triplet folder, or a folder of triplet folders")
    parser.add_argument("--out", default=os.path.join("runs", "memc-train"), metavar="DIR",
                        help="where last.pt, best.pt and log.csv go (default: runs/memc-train)")
    parser.add_argument("--model", choices=sorted(MODELS), default="memc", help="the variant (default: memc)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init-checkpoint", metavar="PATH",
                       help="start from these weights: ours (a state dict) or the authors' released checkpoint")
    start.add_argument("--resume", metavar="PATH",
                       help="continue from a last.pt: model, optimizer, scheduler and epoch; log.csv in --out is appended to "
                            "(into a new --out, the run's log.csv and best.pt are copied there after the first epoch)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an --out that holds one, deleting its last.pt, best.pt and log.csv "
                        "(without it, that is an error)")
    parser.add_argument("--epochs", type=int, default=100, help="train until this many epochs are done (default: 100)")
    parser.add_argument("--batch-size", type=int, default=1, help="triplets per step (default: 1)")
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 448), metavar=("H", "W"),
                        help="random training crop (default: 256 448, full Vimeo90K frames); validation uses full frames")
    parser.add_argument("--lr", type=float, default=1.0, metavar="SCALE",
                        help="multiplies every learning rate (default 1: 2e-3 kernel/mask/context, 2e-5 flow, 1e-3 post-processing)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="data loading processes (default: min(4, CPUs))")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (default: auto)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 (or float16 where unsupported) autocast on CUDA")
    parser.add_argument("--max-steps", type=int, metavar="N", help="at most N training steps per epoch (quick runs)")
    parser.add_argument("--val-limit", type=int, metavar="N", help="validate on the first N test triplets only")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def _check_args(args) -> None:
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    for name in ("max_steps", "val_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1; got {value}")
    if args.workers < 0:
        raise UserError(f"--workers must be 0 or more; got {args.workers}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be a positive finite number; got {args.lr}")
    if min(args.crop) < 1:
        raise UserError(f"--crop must be two positive sizes H W; got {args.crop[0]} {args.crop[1]}")
    for option, path in (("--resume", args.resume), ("--init-checkpoint", args.init_checkpoint)):
        if path is not None and not os.path.isfile(path):
            raise UserError(f"{option} {path}: no such file")
    if args.overwrite and args.resume is not None:
        raise UserError("--overwrite starts a new run; it cannot go with --resume, which continues one")


#: What a run writes in --out.
_RUN_FILES = ("last.pt", "best.pt", "log.csv")
#: What --resume into a new --out copies there from the run's folder.
_CARRIED_FILES = ("log.csv", "best.pt")


def _prepare_out(args) -> None:
    """Creates --out and checks that files can be written in it, before any work. A new run must
    not land in a folder holding another (it would replace its checkpoints and mix the epochs of
    both in log.csv) unless --overwrite says so; --resume continues the run there."""
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder")
    present = [name for name in _RUN_FILES if os.path.exists(os.path.join(out, name))]
    if present and args.resume is None and not args.overwrite:
        last = os.path.join(out, "last.pt")
        resume = f"continue it with --resume {last}, " if "last.pt" in present else ""
        raise UserError(f"--out {out} already holds a run ({', '.join(present)}); {resume}"
                        f"pick another --out, or pass --overwrite to start afresh there")
    if present and args.resume is not None and not _resumes_in_place(args):
        # Continuing one run into the folder of another would mix their epochs in log.csv and
        # keep the other's best.pt unless this run beats it.
        raise UserError(f"--out {out} holds another run ({', '.join(present)}) than --resume {args.resume}; "
                        f"continue {args.resume}'s run in its own folder or in a new --out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create the folder ({error.strerror or error})") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UserError(f"--out {out}: cannot write files there ({error.strerror or error})") from None


def _run_folders(args) -> List[str]:
    """Where the run --resume continues may lie: beside the file named, or beside the file a link
    leads to (a link to a run's last.pt, or a run whose last.pt is a link)."""
    named = os.path.dirname(os.path.abspath(args.resume))
    real = os.path.dirname(os.path.realpath(args.resume))
    return [named] if os.path.samefile(named, real) else [named, real]


def _run_folder(args) -> str:
    """The folder of the run --resume continues: the first of :func:`_run_folders` holding its
    log.csv or best.pt (else the file's own folder)."""
    for folder in _run_folders(args):
        if any(os.path.isfile(os.path.join(folder, name)) for name in _CARRIED_FILES):
            return folder
    return _run_folders(args)[0]


def _resumes_in_place(args) -> bool:
    """Whether --resume names the last.pt of the run in --out, so that the run goes on where it was."""
    return os.path.isdir(args.out) and any(os.path.samefile(folder, args.out) for folder in _run_folders(args))


def _files_to_carry(args) -> List[str]:
    """The resumed run's log.csv and best.pt, those that lie beside its last.pt."""
    return [name for name in _CARRIED_FILES if os.path.isfile(os.path.join(_run_folder(args), name))]


def _carry_run_files(args, say) -> None:
    """Copies the resumed run's log.csv and best.pt into a new --out, so that the folder holds the
    whole run: every epoch's line and the best weights so far. Done once the first epoch there has
    validated: a start that fails or is stopped before leaves --out as it was, to try again."""
    carried = []
    for name in _files_to_carry(args):
        source = os.path.join(_run_folder(args), name)
        try:
            shutil.copy2(source, os.path.join(args.out, name))
        except OSError as error:
            raise UserError(f"cannot copy {source} into --out {args.out} ({error.strerror or error})") from None
        carried.append(name)
    if carried:
        say(f"copied {' and '.join(carried)} of the resumed run from {_run_folder(args)} into {args.out}")


class _Interrupted(Exception):
    """Ctrl-C during training, with a message saying what was saved."""


def _log(path: str, row: dict) -> None:
    new = not os.path.isfile(path)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _train(args) -> None:
    from tqdm import tqdm

    _check_args(args)
    device = pick_device(args.device)
    if not os.path.isdir(args.data):
        raise UserError(f"{args.data}: no such folder")
    state = None
    if args.resume:
        # Checked before building anything: a last.pt of another variant fails to load with a
        # message that cannot say which --model it needs.
        state = _read_training_state(args.resume)
        previous = state.get("config", {}).get("model")
        if previous not in (None, args.model):
            raise UserError(f"--resume {args.resume} was trained with --model {previous}; pass --model {previous}")
        if int(state["epoch"]) >= args.epochs:
            raise UserError(f"--resume {args.resume} has already done {int(state['epoch'])} epochs; "
                            f"pass --epochs above {int(state['epoch'])}")
    _prepare_out(args)
    torch.manual_seed(args.seed)

    train_set = VimeoTriplets(args.data, "train", crop=tuple(args.crop), augment=True)
    val_set = VimeoTriplets(args.data, "test", limit=args.val_limit)
    say = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    if not val_set.from_list:
        say(f"note: {args.data} has no tri_testlist.txt; validating on the training triplets")

    loader_options = dict(num_workers=args.workers, pin_memory=device.type == "cuda",
                          persistent_workers=args.workers > 0)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=False, **loader_options)
    val_loader = DataLoader(val_set, batch_size=1, shuffle=False, **loader_options)

    model = build_model(args.model, args.init_checkpoint).to(device)
    optimizer = build_optimizer(model, args.lr)
    scheduler = build_scheduler(optimizer)
    base_lr = optimizer.param_groups[0]["lr"]
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    epoch, best_psnr = 0, -math.inf
    if state is not None:
        _restore_training_state(args.resume, state, model, optimizer, scheduler, scaler)
        epoch, best_psnr = int(state["epoch"]), float(state.get("best_psnr", -math.inf))
        base_lr = LEARNING_RATES[optimizer.param_groups[0]["name"]] * float(state.get("config", {}).get("lr", args.lr))
        say(f"resumed from {args.resume} after epoch {epoch} (best PSNR {best_psnr:.2f} dB)")
    if args.amp and device.type != "cuda":
        say("note: --amp applies on CUDA; training in float32")

    carry = bool(args.resume) and not _resumes_in_place(args)
    if carry:
        missing = [name for name in _CARRIED_FILES if name not in _files_to_carry(args)]
        if "best.pt" in missing and math.isfinite(best_psnr):
            say(f"note: no best.pt beside {args.resume}: {os.path.join(args.out, 'best.pt')} is written when an "
                f"epoch beats its best validation PSNR ({best_psnr:.2f} dB)")
        if "log.csv" in missing:
            say(f"note: no log.csv beside {args.resume}: {os.path.join(args.out, 'log.csv')} starts at epoch {epoch + 1}")
    if args.overwrite:
        # Only now, once everything has loaded: a failed start leaves the old run as it was.
        for name in _RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.out, name))
    config = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(args).items()}
    last_path = os.path.join(args.out, "last.pt")
    # Where training can continue from, and after which epoch: for the message on Ctrl-C.
    saved, saved_epoch = args.resume, epoch
    try:
        for epoch in range(epoch + 1, args.epochs + 1):
            start = time.perf_counter()
            model.train()
            steps = len(train_loader) if args.max_steps is None else min(args.max_steps, len(train_loader))
            losses = []
            bar = tqdm(total=steps, desc=f"epoch {epoch}/{args.epochs}", unit="step", disable=args.quiet,
                       dynamic_ncols=True)
            try:
                for batch in itertools.islice(train_loader, steps):
                    losses.append(train_step(model, optimizer, batch, device, args.amp, scaler))
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", mean=f"{np.mean(losses):.4f}")
            finally:
                bar.close()
            val_loss, val_psnr = validate(model, val_loader, device, args.amp, progress=not args.quiet)
            if not math.isfinite(val_loss):
                # The last step made the weights non-finite: keep last.pt at the previous epoch.
                raise FloatingPointError(f"the validation loss after epoch {epoch} is {val_loss}; "
                                         f"lower --lr or turn off --amp")
            if carry:
                _carry_run_files(args, say)
                carry = False
            scheduler.step(val_loss)
            improved = val_psnr > best_psnr
            if improved:
                best_psnr = val_psnr
                torch.save(model.state_dict(), os.path.join(args.out, "best.pt"))
            save_training_state(last_path, model, optimizer, scheduler, epoch, config, best_psnr, scaler)
            saved, saved_epoch = last_path, epoch
            seconds = time.perf_counter() - start
            _log(os.path.join(args.out, "log.csv"), {
                "epoch": epoch, "steps": len(losses), "train_loss": f"{np.mean(losses):.6f}",
                "val_loss": f"{val_loss:.6f}", "val_psnr": f"{val_psnr:.4f}",
                "lr_factor": f"{optimizer.param_groups[0]['lr'] / base_lr:.6g}", "seconds": f"{seconds:.1f}",
            })
            say(f"epoch {epoch}: train loss {np.mean(losses):.4f}, val loss {val_loss:.4f}, "
                f"val PSNR {val_psnr:.2f} dB{' (best)' if improved else ''}, {seconds:.0f} s")
    except KeyboardInterrupt:
        if saved is None:
            raise _Interrupted(f"interrupted in epoch {epoch}; no epoch finished yet, so nothing was saved") from None
        raise _Interrupted(f"interrupted in epoch {epoch}; {saved} holds epoch {saved_epoch}: "
                           f"continue with --resume {saved}") from None


def _user_message(error: UserError) -> str:
    """The message of a UserError, also when a DataLoader worker raised it: the loader re-raises it
    in the main process with the worker's traceback as its text, whose last line is
    ``memc_models.io.UserError: <message>``."""
    text = str(error)
    if text.startswith("Caught UserError") and "Traceback" in text:
        return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _train(args)
    except UserError as error:
        print(f"memc-train: error: {_user_message(error)}", file=sys.stderr)
        return 1
    except FloatingPointError as error:
        print(f"memc-train: error: {error}", file=sys.stderr)
        return 1
    except _Interrupted as interruption:
        print(f"memc-train: {interruption}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("memc-train: interrupted before training began", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
