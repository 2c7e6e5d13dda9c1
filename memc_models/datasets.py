"""Datasets: Middlebury and Vimeo90K test samples, the frames of a video held out in turn, and
Vimeo90K triplets for training.

A test sample is the frame at time 0.5 between two frames and its truth. The finders return the
samples they can use and name every one they cannot (``Beta: no frame10i11.png``), so that a
table never silently covers less than the data; what a list file names must all be there.
"""

import itertools
import os
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import UserError
from .images import check_headers, read_image
from .streaming import VideoSource, windows

__all__ = ["FRAME_TRIPLES", "LoadedSample", "Sample", "Samples", "VimeoSeptuplets", "VimeoTriplets", "augment_triplet",
           "crop_frames", "listed_folders", "middlebury_samples", "read_samples", "septuplet_folders", "triple_time",
           "triplet_folders", "video_samples", "vimeo_samples"]

MIDDLEBURY_FRAMES = ("frame10.png", "frame11.png", "frame10i11.png")
TRIPLET_FRAMES = ("im1.png", "im2.png", "im3.png")
SEPTUPLET_FRAMES = tuple(f"im{k}.png" for k in range(1, 8))


class Sample(NamedTuple):
    """One test: the frame at time 0.5 between ``first`` and ``second`` should be ``truth``."""

    name: str
    first: str
    second: str
    truth: str


class Samples(NamedTuple):
    """The samples found, and one line per sequence that could not be used (``NAME: why``)."""

    samples: List[Sample]
    unusable: List[str]


def _missing(folder: str, names: Sequence[str]) -> List[str]:
    return [name for name in names if not os.path.isfile(os.path.join(folder, name))]


def _no(names: Sequence[str]) -> str:
    return "no " + ", ".join(names)


def middlebury_samples(root: str) -> Samples:
    """Every folder under ``root`` (or ``root`` itself) holding Middlebury's frame10.png,
    frame11.png and the truth frame10i11.png, in name order. A folder holding some of the three
    but not all is named in ``unusable`` (a sequence without its truth, as Middlebury's eval set)."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    folders = [root] + [os.path.join(root, name) for name in sorted(os.listdir(root))
                        if os.path.isdir(os.path.join(root, name))]
    samples, unusable = [], []
    for folder in folders:
        name = os.path.basename(os.path.normpath(folder))
        missing = _missing(folder, MIDDLEBURY_FRAMES)
        if not missing:
            samples.append(Sample(name, *(os.path.join(folder, n) for n in MIDDLEBURY_FRAMES)))
        elif len(missing) < len(MIDDLEBURY_FRAMES):
            unusable.append(f"{name}: {_no(missing)}")
    if not samples:
        why = f" ({'; '.join(unusable)})" if unusable else ""
        raise UserError(f"{root}: no sequence with {', '.join(MIDDLEBURY_FRAMES)} (Middlebury's layout){why}")
    return Samples(samples, unusable)


def listed_folders(root: str, list_name: str, frames: Sequence[str]) -> Optional[List[str]]:
    """The folders a Vimeo90K list file in ``root`` names (entries ``XXXXX/YYYY`` under
    ``root/sequences`` or ``root``), each checked to hold ``frames``; None without the file. A
    list naming a folder that lacks them, or naming none, is an error."""
    list_path = os.path.join(root, list_name)
    if not os.path.isfile(list_path):
        return None
    base = os.path.join(root, "sequences") if os.path.isdir(os.path.join(root, "sequences")) else root
    try:
        with open(list_path) as handle:
            folders = [os.path.normpath(os.path.join(base, line.strip())) for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{list_path}: cannot read it ({error})") from None
    if not folders:
        raise UserError(f"{list_path} is empty")
    missing = [folder for folder in folders if _missing(folder, frames)]
    if missing:
        expected = ", ".join(frames) if len(frames) <= 3 else f"{frames[0]} .. {frames[-1]}"
        raise UserError(f"{list_path} lists {len(missing)} folder(s) without {expected}, e.g. "
                        + ", ".join(missing[:3]))
    return folders


def vimeo_samples(root: str) -> Samples:
    """Vimeo90K: folders with im1..im3.png (triplets: im2 from im1, im3) or im1..im7.png
    (septuplets: im2, im4, im6 from their neighbours). The test list (tri_testlist.txt or
    sep_testlist.txt) is used when present, and everything it names must be there; else every
    folder under ``root`` holding im1.png, those lacking im2.png or im3.png named in ``unusable``."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    folders = listed_folders(root, "tri_testlist.txt", TRIPLET_FRAMES)
    if folders is None:
        folders = listed_folders(root, "sep_testlist.txt", SEPTUPLET_FRAMES)
    if folders is None:
        folders = sorted(dirpath for dirpath, _, files in os.walk(root) if "im1.png" in files)
    samples, unusable = [], []
    for folder in folders:
        name = os.path.relpath(folder, root)
        frames = [os.path.join(folder, n) for n in SEPTUPLET_FRAMES]
        if not _missing(folder, SEPTUPLET_FRAMES):
            for k in (0, 2, 4):
                samples.append(Sample(f"{name}/im{k + 2}", frames[k], frames[k + 2], frames[k + 1]))
        elif not _missing(folder, TRIPLET_FRAMES):
            samples.append(Sample(name, frames[0], frames[2], frames[1]))
        else:
            unusable.append(f"{name}: {_no(_missing(folder, TRIPLET_FRAMES))}")
    if not samples:
        why = f" ({'; '.join(unusable[:3])})" if unusable else ""
        raise UserError(f"{root}: no Vimeo90K sequence (folders with im1.png, im2.png, im3.png){why}")
    return Samples(samples, unusable)


#: A test, loaded: (name, frame 0, frame 1, the true frame between them), frames (1, 3, H, W) in [0, 1].
LoadedSample = Tuple[str, Tensor, Tensor, Tensor]


def read_samples(samples: Iterable[Sample]) -> Iterator[LoadedSample]:
    """The samples' frames, read one sample at a time."""
    for sample in samples:
        yield (sample.name, *(read_image(path) for path in (sample.first, sample.second, sample.truth)))


class video_samples:
    """A video with every inner frame held out in turn: frame i + 1 between frames i and i + 2
    (numbered from 0), for every i, up to ``limit`` tests; iterating streams them with three frames
    in memory at a time. Named ``frameNNNNN`` by the held-out frame. The file is opened here, so that
    an unreadable one fails before any work; ``total`` estimates the number of tests."""

    def __init__(self, path: str, limit: Optional[int] = None):
        self.path, self.limit = path, limit
        self.source = VideoSource(path, constant_rate=False)  # the stored frames, none repeated
        count = self.source.count
        if count is not None and count < 3:
            raise UserError(f"{path}: the video has {count} frame(s); holding one out needs at least 3")
        self.total = None if count is None else count - 2 if limit is None else min(count - 2, limit)

    def __iter__(self) -> Iterator[LoadedSample]:
        tests = 0
        try:
            for first, held_out, second in windows(self.source, 3):
                yield (f"frame{held_out.index:05d}", first.image, second.image, held_out.image)
                tests += 1
                if tests == self.limit:
                    return
        finally:
            self.source.close()
        if tests == 0:
            raise UserError(f"{self.path}: the video has fewer than 3 frames; holding one out needs at least 3")


# ----------------------------------------------------------------------------------------------
# Training triplets


def triplet_folders(root: str, split: str = "train") -> Tuple[List[str], bool]:
    """The triplet folders of ``split`` (``"train"`` or ``"test"``) under a Vimeo90K root.

    With ``tri_trainlist.txt`` / ``tri_testlist.txt`` (entries ``XXXXX/YYYY`` under
    ``root/sequences`` or ``root``) the lists are used. Without the list of ``split``, training
    uses every folder holding im1.png, im2.png and im3.png that the test list does not name, and
    validation uses the training folders. Returns (folders, from_list).
    """
    return _vimeo_folders(root, split, "tri", TRIPLET_FRAMES, "triplets (folders with im1.png, im2.png, im3.png")


def _vimeo_folders(root: str, split: str, prefix: str, frames: Sequence[str], what: str) -> Tuple[List[str], bool]:
    """The folders of ``split`` from ``root/{prefix}_{split}list.txt``, else (training) every folder
    holding ``frames`` that the test list does not name, or (validation) the training folders."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    listed = listed_folders(root, f"{prefix}_{split}list.txt", frames)
    if listed is not None:
        return listed, True
    if split == "test":
        return _vimeo_folders(root, "train", prefix, frames, what)[0], False
    excluded = set(listed_folders(root, f"{prefix}_testlist.txt", frames) or ())
    folders = sorted(
        os.path.normpath(dirpath)
        for dirpath, _, files in os.walk(root)
        if all(name in files for name in frames) and os.path.normpath(dirpath) not in excluded
    )
    if not folders:
        raise UserError(f"{root}: no Vimeo90K {what}, or {prefix}_trainlist.txt)")
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


class _VimeoFolders(Dataset):
    """What the triplet and septuplet datasets share: the folders of a split (``find(root,
    split)``), each holding ``FRAMES``, cut to ``limit``; the crop checked against the first
    folder's frames; three of a folder's frames read, checked alike in size and cropped."""

    FRAMES: Tuple[str, ...]
    find: Callable[[str, str], Tuple[List[str], bool]]

    def __init__(self, root: str, split: str = "train", crop: Optional[Tuple[int, int]] = None,
                 augment: bool = False, limit: Optional[int] = None):
        self.folders, self.from_list = self.find(root, split)
        if limit is not None:
            self.folders = self.folders[:limit]
        self.crop = _checked_crop(crop, lambda: self.frame_size(0), self.folders[0])
        self.augment = augment

    def frame_size(self, index: int) -> Tuple[int, int]:
        """(H, W) of the frames of folder ``index`` (its first frame's)."""
        return tuple(read_image(os.path.join(self.folders[index], self.FRAMES[0])).shape[-2:])

    def check_files(self) -> None:
        """Raises a UserError naming the files of these folders that are missing or whose header
        does not read as an image: before training, not after an epoch."""
        check_headers(os.path.join(folder, name) for folder in self.folders for name in self.FRAMES)

    def __len__(self) -> int:
        return len(self.folders)

    def _frames(self, index: int, numbers: Sequence[int]) -> Tensor:
        """Frames ``numbers`` (indices into ``FRAMES``) of folder ``index`` as (3, 3, H, W),
        cropped (at random with ``augment``)."""
        folder = self.folders[index]
        images = [read_image(os.path.join(folder, self.FRAMES[k]))[0] for k in numbers]
        if any(image.shape != images[0].shape for image in images):
            raise UserError(f"{folder}: the three frames differ in size: {[tuple(i.shape[1:]) for i in images]}")
        return crop_frames(torch.stack(images), self.crop, self.augment, folder)

    def _augmented(self, frames: Tensor) -> Tuple[Tensor, bool]:
        """``frames`` flipped and swapped at random with ``augment`` (see :func:`augment_triplet`),
        contiguous, and whether they were swapped."""
        swap = False
        if self.augment:
            hflip, vflip, swap = (torch.rand(3) < 0.5).tolist()
            frames = augment_triplet(frames, hflip, vflip, swap)
        return frames.contiguous(), swap


class VimeoTriplets(_VimeoFolders):
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

    FRAMES = TRIPLET_FRAMES
    find = staticmethod(triplet_folders)

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor]:
        frames, _ = self._augmented(self._frames(index, (0, 1, 2)))
        return frames[0], frames[1], frames[2]


def _checked_crop(crop: Optional[Tuple[int, int]], frame_size: Callable[[], Tuple[int, int]],
                  folder: str) -> Optional[Tuple[int, int]]:
    """``crop`` as two ints, checked to be positive and to fit the first sample's frames
    (``frame_size()``, read only when there is a crop, from ``folder``)."""
    if crop is None:
        return None
    crop = (int(crop[0]), int(crop[1]))
    if min(crop) < 1:
        raise UserError(f"--crop must be two positive sizes H W; got {crop[0]} {crop[1]}")
    height, width = frame_size()
    if crop[0] > height or crop[1] > width:
        raise UserError(f"--crop {crop[0]} {crop[1]} is larger than the frames of {folder} ({height}x{width}, H x W)")
    return crop


def crop_frames(frames: Tensor, crop: Optional[Tuple[int, int]], random: bool, folder: str) -> Tensor:
    """(3 frames, C, H, W) cropped to ``crop`` (H, W) at the same place in every frame: a random
    place (torch's generator) or the centre; all of them for ``crop`` None."""
    if crop is None:
        return frames
    height, width = frames.shape[-2:]
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width:
        raise UserError(f"{folder}: frames of {height}x{width} (H x W) are smaller than --crop {crop_h} {crop_w}")
    if random:
        top = int(torch.randint(height - crop_h + 1, ()))
        left = int(torch.randint(width - crop_w + 1, ()))
    else:
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return frames[..., top : top + crop_h, left : left + crop_w]


# ----------------------------------------------------------------------------------------------
# Training septuplets: samples at any time t
#
# Any three frames i < j < k of a Vimeo90K septuplet (numbered 0..6) make a sample: frame j lies
# at t = (j - i) / (k - i) between frames i and k. The 35 triples give the times 1/6 .. 5/6 (1/2
# most often): a model trained on them interpolates at any t, which the released MEMC-Net,
# trained on triplets (t = 1/2 alone), never did.
#
# One sample per septuplet and epoch, as for triplets (an epoch costs the same, and --max-steps
# and the learning-rate schedule keep their meaning):
# - training (augment): each read of a septuplet draws one of the 35 triples uniformly (torch's
#   generator, like the crop and flips), so over the epochs every septuplet is seen at every t;
# - validation: septuplet n always gives FRAME_TRIPLES[n % 35], the same set every epoch, covering
#   every triple once there are 35 septuplets.

#: Every (i, j, k) with 0 <= i < j < k <= 6, in lexicographic order: the frames (numbered from 0)
#: a septuplet's samples are made of.
FRAME_TRIPLES: Tuple[Tuple[int, int, int], ...] = tuple(itertools.combinations(range(7), 3))


def triple_time(triple: Tuple[int, int, int]) -> float:
    """t = (j - i) / (k - i): where frame j lies between frames i (t = 0) and k (t = 1)."""
    i, j, k = triple
    if not (0 <= i < j < k):
        raise ValueError(f"a triple must have i < j < k; got {triple}")
    return (j - i) / (k - i)


def septuplet_folders(root: str, split: str = "train") -> Tuple[List[str], bool]:
    """The septuplet folders of ``split`` (``"train"`` or ``"test"``) under a Vimeo90K septuplet
    root, found as :func:`triplet_folders` finds triplets: from ``sep_trainlist.txt`` /
    ``sep_testlist.txt`` when present; else training uses every folder holding im1.png .. im7.png
    that the test list does not name, and validation the training folders. Returns (folders, from_list)."""
    return _vimeo_folders(root, split, "sep", SEPTUPLET_FRAMES, "septuplets (folders with im1.png .. im7.png")


class VimeoSeptuplets(_VimeoFolders):
    """Vimeo90K septuplets as ``(frame0, middle, frame1, t)``: three (3, H, W) float32 RGB frames
    in [0, 1] and t, a float32 scalar tensor, ``middle`` lying at time t between the other two.
    Which three frames: see "Training septuplets" above.

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

    FRAMES = SEPTUPLET_FRAMES
    find = staticmethod(septuplet_folders)

    def triple(self, index: int) -> Tuple[int, int, int]:
        """The frames sample ``index`` is made of: drawn when augmenting, else fixed."""
        if self.augment:
            return FRAME_TRIPLES[int(torch.randint(len(FRAME_TRIPLES), ()))]
        return FRAME_TRIPLES[index % len(FRAME_TRIPLES)]

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        triple = self.triple(index)
        frames, swapped = self._augmented(self._frames(index, triple))
        t = 1.0 - triple_time(triple) if swapped else triple_time(triple)  # swapped: frame k comes first
        return frames[0], frames[1], frames[2], torch.tensor(t, dtype=torch.float32)
