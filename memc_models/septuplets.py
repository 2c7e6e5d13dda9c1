"""Vimeo90K septuplets as training samples at any time t between two frames.

Vimeo90K's septuplet set holds folders of seven consecutive frames (``sequences/XXXXX/YYYY/im1.png
.. im7.png``, listed in ``sep_trainlist.txt`` and ``sep_testlist.txt``). Any three frames
i < j < k of a septuplet (numbered 0..6) make a sample: frame j lies at time
t = (j - i) / (k - i) between frames i and k. The 35 such triples give the times 1/6 .. 5/6
(and 1/2 most often): a model trained on them interpolates at any t, which the released
MEMC-Net, trained on triplets (t = 1/2 alone), never did.

How samples are drawn (one sample per septuplet and epoch, as for triplets, so that an epoch
costs the same and ``--max-steps`` and the learning-rate schedule keep their meaning):
- training (``augment=True``): each time a septuplet is read, one of the 35 triples is drawn
  uniformly at random (torch's generator, like the crop and flips), so that over the epochs
  every septuplet is seen at every t;
- validation (``augment=False``): septuplet n always gives triple ``FRAME_TRIPLES[n % 35]``, so
  the validation set is the same every epoch and covers every triple once it has 35 septuplets.
"""

import itertools
import os
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .io import UserError, read_image

__all__ = ["FRAME_TRIPLES", "SEPTUPLET_FRAMES", "VimeoSeptuplets", "septuplet_folders", "triple_time"]

SEPTUPLET_FRAMES = tuple(f"im{k}.png" for k in range(1, 8))

#: Every (i, j, k) with 0 <= i < j < k <= 6, in lexicographic order: the frames (numbered from 0)
#: a septuplet's samples are made of.
FRAME_TRIPLES: Tuple[Tuple[int, int, int], ...] = tuple(itertools.combinations(range(7), 3))


def triple_time(triple: Tuple[int, int, int]) -> float:
    """t = (j - i) / (k - i): where frame j lies between frames i (t = 0) and k (t = 1)."""
    i, j, k = triple
    if not (0 <= i < j < k):
        raise ValueError(f"a triple must have i < j < k; got {triple}")
    return (j - i) / (k - i)


def _is_septuplet(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in SEPTUPLET_FRAMES)


def _listed_folders(root: str, list_name: str) -> Optional[List[str]]:
    path = os.path.join(root, list_name)
    if not os.path.isfile(path):
        return None
    base = os.path.join(root, "sequences") if os.path.isdir(os.path.join(root, "sequences")) else root
    with open(path) as handle:
        folders = [os.path.normpath(os.path.join(base, line.strip())) for line in handle if line.strip()]
    if not folders:
        raise UserError(f"{path} is empty")
    missing = [folder for folder in folders if not _is_septuplet(folder)]
    if missing:
        raise UserError(f"{path} lists {len(missing)} folder(s) without im1.png .. im7.png, e.g. {missing[0]}")
    return folders


def septuplet_folders(root: str, split: str = "train") -> Tuple[List[str], bool]:
    """The septuplet folders of ``split`` (``"train"`` or ``"test"``) under a Vimeo90K septuplet
    root, as :func:`memc_models.train.triplet_folders` finds triplets: from ``sep_trainlist.txt``
    / ``sep_testlist.txt`` (entries ``XXXXX/YYYY`` under ``root/sequences`` or ``root``) when
    present; else training uses every folder holding im1.png .. im7.png that the test list does
    not name, and validation the training folders. Returns (folders, from_list)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    listed = _listed_folders(root, f"sep_{split}list.txt")
    if listed is not None:
        return listed, True
    if split == "test":
        return septuplet_folders(root, "train")[0], False
    excluded = set(_listed_folders(root, "sep_testlist.txt") or ())
    folders = sorted(
        os.path.normpath(dirpath)
        for dirpath, _, files in os.walk(root)
        if all(name in files for name in SEPTUPLET_FRAMES) and os.path.normpath(dirpath) not in excluded
    )
    if not folders:
        raise UserError(f"{root}: no Vimeo90K septuplets (folders with im1.png .. im7.png, or sep_trainlist.txt)")
    return folders, False


class VimeoSeptuplets(Dataset):
    """Vimeo90K septuplets as ``(frame0, middle, frame1, t)``: three (3, H, W) float32 RGB frames
    in [0, 1] and t, a float32 scalar tensor, with ``middle`` at time t between the other two.
    Which three frames: see the module's docstring.

    Args:
        root: the Vimeo90K septuplet folder (``sequences/`` and the lists), or a folder of
            septuplet folders.
        split: ``"train"`` or ``"test"`` (see :func:`septuplet_folders`).
        crop: (height, width) of a crop at the same place in the three frames: random with
            ``augment``, centred without; None for the full frames.
        augment: a random triple, crop position, horizontal and vertical flips and temporal
            order swap (frames i and k exchanged, so t becomes 1 - t), each flip and the swap
            with probability 1/2.
        limit: use only the first ``limit`` septuplets.
    """

    def __init__(self, root: str, split: str = "train", crop: Optional[Tuple[int, int]] = None,
                 augment: bool = False, limit: Optional[int] = None):
        self.folders, self.from_list = septuplet_folders(root, split)
        if limit is not None:
            self.folders = self.folders[:limit]
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.augment = augment
        if self.crop is not None:
            if min(self.crop) < 1:
                raise UserError(f"--crop must be two positive sizes H W; got {self.crop[0]} {self.crop[1]}")
            height, width = read_image(os.path.join(self.folders[0], SEPTUPLET_FRAMES[0])).shape[-2:]
            if self.crop[0] > height or self.crop[1] > width:
                raise UserError(f"--crop {self.crop[0]} {self.crop[1]} is larger than the frames of "
                                f"{self.folders[0]} ({height}x{width}, H x W)")

    def __len__(self) -> int:
        return len(self.folders)

    def triple(self, index: int) -> Tuple[int, int, int]:
        """The frames sample ``index`` is made of: random when augmenting, else fixed."""
        if self.augment:
            return FRAME_TRIPLES[int(torch.randint(len(FRAME_TRIPLES), ()))]
        return FRAME_TRIPLES[index % len(FRAME_TRIPLES)]

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        folder = self.folders[index]
        triple = self.triple(index)
        images = [read_image(os.path.join(folder, SEPTUPLET_FRAMES[k]))[0] for k in triple]
        if any(image.shape != images[0].shape for image in images):
            raise UserError(f"{folder}: the frames differ in size: "
                            f"{[tuple(image.shape[1:]) for image in images]}")
        frames = torch.stack(images)
        t = triple_time(triple)
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
            if hflip:
                frames = frames.flip(-1)
            if vflip:
                frames = frames.flip(-2)
            if swap:
                frames, t = frames.flip(0), 1.0 - t
        frames = frames.contiguous()
        return frames[0], frames[1], frames[2], torch.tensor(t, dtype=torch.float32)
