"""Checkpoints: the authors' released MEMC-Net files loaded into :class:`memc_models.MEMCNet`,
our own weights and memc-train's training state (``last.pt``), read with checks and written
atomically.

The released models (``networks/MEMC_Net.py``, ``MEMC_Net_s.py``, ``MEMC_Net_star.py``) keep
their U-Nets as flat lists of layers, so their state-dict names are layer positions
(``initScaleNets_filter.26.weight``); ours name blocks (``kernel_net.trunk.encoder.4.convs.0.weight``).
The map between the two is derived from our modules, walking each U-Net's blocks in the order
the released list holds them: per convolution two entries (conv, ReLU), then the batch norm if
any, then the pooling or upsampling layer between blocks.
"""

import math
import os
import re
import warnings
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Tuple, Union

import torch
from torch import Tensor

from .atomic import AtomicFile
from .errors import UserError, first_few, first_line, os_reason
from .memc_net import RELEASE_OPTIONS, MEMCNet
from .memc_net_ve import MEMCNetVE
from .networks import FlowNetS, PostProcessNet, ResidualPostProcessNet, SPyNet, TwoHeadUNet
from .variants import ENHANCEMENT_VARIANTS, VARIANTS
from .variants import variant as _find_variant

__all__ = [
    "StateDictMismatch",
    "TRAINING_STATE_ENTRIES",
    "compare_state_dict",
    "convert_original_state_dict",
    "is_training_state",
    "load_enhancement_model",
    "load_model",
    "load_training_state",
    "load_original_checkpoint",
    "original_names",
    "read_checkpoint",
    "read_training_state",
    "restore_training_state",
    "save_training_state",
    "save_weights",
]

# How many names an error message lists before "and N more".
_NAMES_SHOWN = 3


def _some(names: Iterable[str]) -> str:
    """The first few names, and how many more."""
    return first_few(names, _NAMES_SHOWN)


def _plain(message: str) -> str:
    """``message`` without terminal colour codes (torch puts some in its load errors)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", message)


def _load_problem(error: Exception) -> str:
    """What torch.load's error says is wrong with the file, in one line, without its advice to
    turn weights_only off (which would run whatever code the file holds)."""
    message = _plain(str(error))
    unpickler = re.search(r"WeightsUnpickler error:\s*(.*)", message)
    if unpickler:
        detail = unpickler.group(1).strip() or message[unpickler.end() :].strip()
        pickled = re.search(r"GLOBAL ([\w.]+)", detail)
        if pickled:
            return (f"it holds a pickled {pickled.group(1)}, not only tensors; save a state dict "
                    "(model.state_dict()) instead")
        return f"not a file written by torch.save: {detail.splitlines()[0]}"
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    return first.split(". ")[0].rstrip(".")


def read_checkpoint(path: Union[str, os.PathLike], *, map_location: Union[str, torch.device] = "cpu",
                    weights_only: bool = True) -> Any:
    """``torch.load(path)``, with a one-line ``ValueError`` (``PATH: cannot read it as a PyTorch
    checkpoint (why)``) for a file torch cannot read. A missing file stays a ``FileNotFoundError``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except OSError:
        raise
    except Exception as error:
        raise ValueError(f"{os.fspath(path)}: cannot read it as a PyTorch checkpoint "
                         f"({_load_problem(error)})") from None


def _kind(value: Any) -> str:
    if isinstance(value, Tensor):
        return "a tensor"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def is_training_state(state: Any) -> bool:
    """Whether ``state`` is what memc-train writes to ``last.pt`` (model, optimizer, scheduler,
    epoch, config): the weights are its ``"model"`` entry."""
    return isinstance(state, Mapping) and isinstance(state.get("model"), Mapping) and "epoch" in state


def _state_dict_problem(state: Any) -> Union[str, None]:
    """Why ``state`` (unwrapped) is not a state dict, or None."""
    if not isinstance(state, Mapping):
        return f"it holds {_kind(state)}, not a state dict (a dict of names to tensors)"
    if is_training_state(state):
        return ("it is a memc-train last.pt (model, optimizer, ...), not a state dict: load its weights with "
                "model.load_state_dict(torch.load(path, weights_only=True)['model'])")
    if not state:
        return "it holds an empty dict, not a state dict"
    for name, value in state.items():
        if not isinstance(value, Tensor):
            return f"it is not a state dict: entry {name!r} holds {_kind(value)}, not a tensor"
    return None


def _unet_names(net: TwoHeadUNet, ours: str, theirs: str) -> Dict[str, str]:
    names = {}
    index = 0
    blocks = net.trunk.blocks()
    for number, block in enumerate(blocks):
        where = f"{ours}.trunk.{_block_path(net, block)}"
        for j in range(len(block.convs)):
            for param in ("weight", "bias"):
                names[f"{where}.convs.{j}.{param}"] = f"{theirs}.{index}.{param}"
            index += 2  # the convolution and its ReLU
        if block.norm is not None:
            for entry in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                names[f"{where}.norm.{entry}"] = f"{theirs}.{index}.{entry}"
            index += 1
        if number < len(blocks) - 1:
            index += 1  # the max-pooling or upsampling layer
    for head_index in range(len(net.heads)):
        suffix = str(head_index + 1)
        for layer, position in (("hidden", 0), ("output", 2)):
            for param in ("weight", "bias"):
                names[f"{ours}.heads.{head_index}.{layer}.{param}"] = f"{theirs}{suffix}.{position}.{param}"
    return names


def _block_path(net: TwoHeadUNet, block) -> str:
    for name, module in net.trunk.named_modules():
        if module is block:
            return name
    raise AssertionError("block not in trunk")


def original_names(model: Union[MEMCNet, MEMCNetVE]) -> Dict[str, str]:
    """Maps each of ``model``'s state-dict names to the released model's name for that entry."""
    names = {}
    if isinstance(model.flow_net, FlowNetS):
        # Same layout as the released FlowNetS.
        for key in model.flow_net.state_dict():
            names[f"flow_net.{key}"] = f"flownets.{key}"
    elif isinstance(model.flow_net, SPyNet):
        for key in model.flow_net.state_dict():
            level, rest = key.split(".", 2)[1:]  # levels.<level>.<layer>.<param>
            names[f"flow_net.{key}"] = f"flownets.moduleBasic.{level}.moduleBasic.{rest}"
    names.update(_unet_names(model.kernel_net, "kernel_net", "initScaleNets_filter"))
    if getattr(model, "mask_net", None) is not None:  # MEMCNetVE has none
        names.update(_unet_names(model.mask_net, "mask_net", "initScaleNets_occlusion"))
    if model.context_net is not None:
        names["context_net.conv.weight"] = "ctxNet.conv1.weight"
    post = model.post_net
    for param in ("weight", "bias"):
        if isinstance(post, PostProcessNet):
            for j in range(len(post.convs)):
                names[f"post_net.convs.{j}.{param}"] = f"rectifyNet.{2 * j}.{param}"
        elif isinstance(post, ResidualPostProcessNet):
            names[f"post_net.head.{param}"] = f"rectifyNet.head.0.{param}"
            for j in range(len(post.blocks)):
                names[f"post_net.blocks.{j}.conv1.{param}"] = f"rectifyNet.body.{j}.body.0.{param}"
                names[f"post_net.blocks.{j}.conv2.{param}"] = f"rectifyNet.body.{j}.body.2.{param}"
            names[f"post_net.body_out.{param}"] = f"rectifyNet.body.{len(post.blocks)}.{param}"
            names[f"post_net.tail.{param}"] = f"rectifyNet.tail.0.{param}"
    return names


def _unwrap(state_dict: Any) -> Any:
    """The state dict inside a ``{"state_dict": ...}`` container, without nn.DataParallel's
    ``"module."`` prefixes (in its names and its metadata); anything but a mapping unchanged."""
    if not isinstance(state_dict, Mapping):
        return state_dict
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    unwrapped = OrderedDict((re.sub(r"^module\.", "", str(name)), value) for name, value in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if isinstance(metadata, Mapping):  # each module's version, and MEMCNet's recorded options
        unwrapped._metadata = OrderedDict((re.sub(r"^module(\.|$)", "", str(key)), value)
                                          for key, value in metadata.items())
    return unwrapped


class StateDictMismatch(NamedTuple):
    """How a state dict differs from a variant's, in the state dict's own naming (``released``:
    the authors' names, else ours). Batch-norm ``num_batches_tracked`` counters may be missing."""

    released: bool
    missing: List[str]
    unexpected: List[str]
    wrong_shape: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]  # name, in the state dict, in the model

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.wrong_shape)

    def describe(self) -> str:
        """One line: how many entries differ in each way, with the first few names."""

        def entries(count: int) -> str:
            return f"{count} entry" if count == 1 else f"{count} entries"

        parts = []
        if self.missing:
            parts.append(f"{entries(len(self.missing))} missing ({_some(self.missing)})")
        if self.unexpected:
            parts.append(f"{entries(len(self.unexpected))} unexpected ({_some(self.unexpected)})")
        if self.wrong_shape:
            shapes = [f"{name} {have} instead of {want}" for name, have, want in self.wrong_shape]
            parts.append(f"{entries(len(shapes))} of another shape ({_some(shapes)})")
        return "; ".join(parts) if parts else "it fits"


def _difference(state: Mapping[str, Tensor], expected: Mapping[str, torch.Size], released: bool) -> StateDictMismatch:
    return StateDictMismatch(
        released=released,
        missing=[name for name in expected if name not in state and not name.endswith("num_batches_tracked")],
        unexpected=[name for name in state if name not in expected],
        wrong_shape=[
            (name, tuple(state[name].shape), tuple(shape))
            for name, shape in expected.items()
            if name in state and tuple(state[name].shape) != tuple(shape)
        ],
    )


def compare_state_dict(state_dict: Mapping[str, Tensor], variant: str) -> StateDictMismatch:
    """How ``state_dict`` (ours, or the authors' released layout, possibly under a
    ``"state_dict"`` key or with ``"module."`` prefixes) differs from ``variant``'s: in whichever
    naming it is closer to. Names and shapes only; nothing is allocated."""
    variant = _find_variant(variant)
    state = _unwrap(state_dict)
    problem = _state_dict_problem(state)
    if problem is not None:
        raise ValueError(problem)
    with torch.device("meta"):
        model = variant.build()
    own = {name: value.shape for name, value in model.state_dict().items()}
    to_released = original_names(model)
    released = {to_released.get(name, name): shape for name, shape in own.items()}
    return min(_difference(state, own, False), _difference(state, released, True), key=lambda m: m.size)


def convert_original_state_dict(
    state_dict: Mapping[str, Tensor], variant: str, model: Union[MEMCNet, MEMCNetVE] = None
) -> Tuple[Dict[str, Tensor], List[str]]:
    """Renames a released state dict to ours.

    Args:
        state_dict: the released checkpoint (a state dict, possibly under a ``"state_dict"`` key
            or with ``"module."`` prefixes).
        variant: ``"MEMC_Net"``, ``"MEMC_Net_s"``, ``"MEMC_Net_star"`` or ``"MEMC_Net_VE"``
            (``memc``, ``memc_net`` etc., ``MEMC-Net*`` and ``MEMC-Net_SR``/``_DN``/``_DB`` are
            accepted too).
        model: the model whose names to use (default: a new model of the variant, on the meta
            device, so nothing is allocated).

    Returns:
        (converted, unplaced): our names -> the released tensors, and the released names that
        correspond to no entry of ours (empty for the released checkpoints).
    """
    variant = _find_variant(variant)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a state dict (a mapping of names to tensors); got {_kind(state_dict)}")
    if model is None:
        with torch.device("meta"):
            model = variant.build()
    theirs_to_ours = {theirs: ours for ours, theirs in original_names(model).items()}
    converted, unplaced = {}, []
    for name, value in _unwrap(state_dict).items():
        if name in theirs_to_ours:
            converted[theirs_to_ours[name]] = value
        else:
            unplaced.append(name)
    return converted, unplaced


def load_original_checkpoint(
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Tensor]],
    variant: str,
    *,
    map_location: Union[str, torch.device] = "cpu",
    strict: bool = True,
    weights_only: bool = True,
    as_released: bool = True,
) -> Union[MEMCNet, MEMCNetVE]:
    """Builds the ``variant`` model and loads a released MEMC-Net checkpoint into it, configured
    to compute what the authors' code computes with these weights.

    Args:
        path_or_state_dict: a released ``.pth`` file or its state dict.
        variant: ``"MEMC_Net"``, ``"MEMC_Net_s"`` or ``"MEMC_Net_star"``, or as the
            command-line tools name them, ``"memc"``, ``"memc_s"``, ``"memc_star"`` (also
            ``memc_net``, ``memc_net_s``, ``memc_net_star`` and ``MEMC-Net*``). The enhancement
            checkpoints ``MEMC-Net_SR.pth``, ``MEMC-Net_DN.pth`` and ``MEMC-Net_DB.pth`` load with
            ``"MEMC_Net_VE"`` (``"memc_ve"``) or their own names (``"MEMC-Net_SR"`` etc.) into a
            :class:`memc_models.MEMCNetVE`.
        map_location: where to load the tensors of a file.
        strict: raise when an entry of the checkpoint has no place in the model or a weight of
            the model is missing from the checkpoint (else warn and keep the model's own values).
            Batch-norm ``num_batches_tracked`` counters, which older checkpoints lack, are never
            required.
        weights_only: read the file with ``torch.load(..., weights_only=True)``, which refuses
            anything but tensors and containers; turn off only for a file you trust that needs it.
        as_released: configure the model as the release computes (``RELEASE_OPTIONS``: the
            evaluation script's padding to multiples of 128, and the released projection's hole
            fill, which never looks below a hole), so that the weights give the authors' frames.
            False keeps memc's own defaults (minimal padding, holes filled from all four sides).
            ``model.configure(...)`` changes either later.

    Returns:
        The model, in eval mode. Save it with ``torch.save(model.state_dict(), path)`` and load
        that with ``model.load_state_dict(torch.load(path, weights_only=True))``.

    Raises:
        ValueError: the file cannot be read, or holds no state dict, or holds our own names
            (a saved ``model.state_dict()``: load that with ``model.load_state_dict``).
        RuntimeError: with ``strict``, the checkpoint does not fit the variant; the message
            names the first few entries that differ.
    """
    variant = _find_variant(variant)
    if isinstance(path_or_state_dict, Mapping):
        state_dict, where = path_or_state_dict, "the state dict"
    else:
        state_dict = read_checkpoint(path_or_state_dict, map_location=map_location, weights_only=weights_only)
        where = os.fspath(path_or_state_dict)
    problem = _state_dict_problem(_unwrap(state_dict))
    if problem is not None:
        raise ValueError(f"{where}: {problem}")
    model = variant.build()
    own = model.state_dict()
    converted, unplaced = convert_original_state_dict(state_dict, variant, model)
    if not converted and any(name in own for name in unplaced):
        raise ValueError(
            f"{where} holds memc_models' own names (as model.state_dict() saves them), not the released ones: "
            "load it with model.load_state_dict(torch.load(path, weights_only=True)) on "
            f"memc_models.{variant.build.__name__}()"
            + (", or pass it to memc-enhance --checkpoint" if variant.name in ENHANCEMENT_VARIANTS
               else ", or pass it to memc-interpolate --checkpoint")
        )
    missing = [name for name in own if name not in converted and not name.endswith("num_batches_tracked")]
    wrong_shape = [name for name, value in converted.items() if value.shape != own[name].shape]
    names = original_names(model)
    problems = []
    if unplaced:
        problems.append(f"{len(unplaced)} checkpoint entries have no place in {variant.released}: {_some(unplaced)}")
    if missing:
        problems.append(f"{len(missing)} weights of {variant.released} are missing from the checkpoint: "
                        f"{_some(names.get(n, n) for n in missing)}")
    if wrong_shape:
        shapes = [f"{names[n]} {tuple(converted[n].shape)} instead of {tuple(own[n].shape)}" for n in wrong_shape]
        problems.append(f"{len(shapes)} checkpoint entries have another shape in {variant.released}: {_some(shapes)}")
    if problems:
        message = f"{where} does not fit {variant.released}: " + "; ".join(problems)
        if strict:
            raise RuntimeError(message)
        warnings.warn(message + " (keeping the model's own values for those)")
    for name in wrong_shape:
        del converted[name]
    for name, value in own.items():
        converted.setdefault(name, value)
    model.load_state_dict(converted, strict=True)
    if as_released and isinstance(model, MEMCNet):  # the release modes are MEMCNet's (MEMCNetVE projects no flow)
        model.configure(**RELEASE_OPTIONS)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Our own files: weights for the tools, and memc-train's training state (last.pt)


def _non_finite_entry(state: Mapping[str, Any]) -> Union[str, None]:
    """The first floating-point entry of a state dict holding NaN or inf, or None."""
    for name, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def _read_named(path: str, option: str) -> Any:
    """:func:`read_checkpoint` of a file the user named with ``option``; failures as UserError."""
    try:
        return read_checkpoint(path)
    except ValueError as error:
        raise UserError(f"{option} {error}") from None
    except OSError as error:
        raise UserError(f"{option} {path}: cannot read it ({os_reason(error)})") from None


def _read_model_file(path: str, option: str) -> Any:
    """The contents of the checkpoint file ``path`` the user named with ``option``: a UserError
    when it is missing, a folder or cannot be read."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a folder; expected a checkpoint file (such as best.pt or last.pt in it)")
    if not os.path.isfile(path):
        raise UserError(f"{option} {path}: no such file")
    return _read_named(path, option)


def _build_loaded(state: Any, variant, released: bool, path: str, option: str) -> torch.nn.Module:
    """The ``variant`` model with ``state`` (which fits it, in the released naming if ``released``),
    in eval mode; weights that are not finite are a UserError."""
    state = _unwrap(state)
    broken = _non_finite_entry(state)
    if broken is not None:
        raise UserError(f"{option} {path}: the weights are damaged ({broken} holds NaN or inf values)")
    if released:
        return load_original_checkpoint(state, variant.name)
    model = variant.build()
    model.load_state_dict(state, strict=False)  # fits: at most batch-norm counters are missing
    return model.eval()


def load_model(path: Union[str, os.PathLike], model_name: str, device: Union[str, torch.device] = "cpu",
               option: str = "--checkpoint") -> MEMCNet:
    """The variant ``model_name`` (any spelling :func:`memc_models.variants.variant` takes) with
    the weights at ``path``, in eval mode on ``device``. The file holds our state dict
    (``torch.save(model.state_dict())``), a memc-train ``last.pt`` (its ``"model"`` entry), or the
    authors' release. A :class:`~memc_models.errors.UserError` beginning with ``option`` (how the
    caller named the file, e.g. the command-line option) says what is wrong with it: missing, a
    folder, unreadable, another variant's (naming the one it fits), or weights that are not finite."""
    wanted = _find_variant(model_name)
    path = os.fspath(path)
    state = _read_model_file(path, option)
    if is_training_state(state):
        config = state.get("config")
        trained = config.get("model") if isinstance(config, dict) else None
        if trained in VARIANTS and trained != wanted.name:
            raise UserError(f"{option} {path} is a memc-train last.pt trained with --model {trained}; "
                            f"pass --model {trained}")
        state = state["model"]
    try:
        mismatches = {name: compare_state_dict(state, name) for name in VARIANTS}  # names and shapes only
    except ValueError as error:
        raise UserError(f"{option} {path}: {error}") from None
    if not mismatches[wanted.name].fits:
        others = [name for name in VARIANTS if mismatches[name].fits]
        if others:
            raise UserError(f"{option} {path} is not a --model {wanted.name} checkpoint; it fits --model {others[0]}")
        nearest = min(VARIANTS, key=lambda name: (mismatches[name].size, name != wanted.name))
        raise UserError(f"{option} {path} is not a --model {wanted.name} checkpoint; it fits none of "
                        f"{', '.join(VARIANTS)} (as --model {nearest}: {mismatches[nearest].describe()})")
    return _build_loaded(state, wanted, mismatches[wanted.name].released, path, option).to(device)


def load_enhancement_model(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                           option: str = "--checkpoint") -> MEMCNetVE:
    """The enhancement model (:class:`~memc_models.MEMCNetVE`) with the weights at ``path``, in
    eval mode on ``device``: one of the authors' ``MEMC-Net_SR.pth``, ``MEMC-Net_DN.pth`` or
    ``MEMC-Net_DB.pth``, or our state dict of that model (``torch.save(model.state_dict())``). A
    :class:`~memc_models.errors.UserError` beginning with ``option`` says what is wrong with the
    file: missing, a folder, unreadable, an interpolation model's (naming its ``--model``) or
    another network's, or weights that are not finite."""
    wanted = ENHANCEMENT_VARIANTS["memc_ve"]
    path = os.fspath(path)
    state = _read_model_file(path, option)
    expected = ("an enhancement model is needed (the authors' MEMC-Net_SR.pth, MEMC-Net_DN.pth or MEMC-Net_DB.pth, "
                "or a saved memc_models.memc_net_ve())")
    if is_training_state(state):
        raise UserError(f"{option} {path} is a memc-train last.pt (an interpolation model's training state); "
                        f"{expected}")
    try:
        mismatch = compare_state_dict(state, wanted.name)
        if not mismatch.fits:
            interpolation = [name for name in VARIANTS if compare_state_dict(state, name).fits]
    except ValueError as error:
        raise UserError(f"{option} {path}: {error}") from None
    if not mismatch.fits:
        if interpolation:
            raise UserError(f"{option} {path} is an interpolation model (memc-interpolate --model {interpolation[0]}); "
                            f"{expected}")
        raise UserError(f"{option} {path} is not an enhancement model checkpoint ({mismatch.describe()}); {expected}")
    return _build_loaded(state, wanted, mismatch.released, path, option).to(device)


def save_weights(path: Union[str, os.PathLike], model: torch.nn.Module) -> None:
    """``torch.save(model.state_dict(), path)``, atomically (see :mod:`memc_models.atomic`)."""
    with AtomicFile(path) as output:
        torch.save(model.state_dict(), output.handle())


#: The entries every memc-train last.pt holds.
TRAINING_STATE_ENTRIES = ("model", "optimizer", "scheduler", "epoch")


def save_training_state(path: Union[str, os.PathLike], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, epoch: int, config: dict, best_psnr: float = -math.inf, scaler=None) -> None:
    """Writes ``{"model", "optimizer", "scheduler", "epoch", "config", "best_psnr"}`` (``epoch``: the
    number of completed epochs; plus ``"scaler"`` under float16 autocast) atomically, loadable with
    ``torch.load(weights_only=True)``. A failed write (a full disk) is a UserError naming ``path``,
    and the previous file stays as it was."""
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
    with AtomicFile(path) as output:
        torch.save(state, output.handle())


def read_training_state(path: Union[str, os.PathLike], option: str = "--resume") -> dict:
    """The dict in a memc-train last.pt, checked for the entries :func:`save_training_state` writes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{option} {path}: no such file")
    state = _read_named(path, option)
    if not isinstance(state, dict) or not set(TRAINING_STATE_ENTRIES) <= set(state):
        raise UserError(f"{option} {path}: not a memc-train last.pt (expected {', '.join(TRAINING_STATE_ENTRIES)})")
    return state


def restore_training_state(path: str, state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           scheduler, scaler=None, option: str = "--resume") -> None:
    """Loads a dict read by :func:`read_training_state` (from ``path``) into the given objects; a
    UserError says how the saved model differs from ``model`` when it does not fit."""
    saved_model = state.get("config", {}).get("model")
    trained_with = f" (it was trained with --model {saved_model})" if saved_model else ""
    saved = state["model"]
    if not isinstance(saved, Mapping):
        raise UserError(f"{option} {path} does not fit this model{trained_with}: its model entry is "
                        f"{_kind(saved)}, not a state dict")
    broken = _non_finite_entry(saved)
    if broken is not None:
        raise UserError(f"{option} {path}: the weights are damaged ({broken} holds NaN or inf values)")
    try:
        model.load_state_dict(saved)
    except (RuntimeError, ValueError, TypeError, AttributeError):
        own = {name: value.shape for name, value in model.state_dict().items()}
        raise UserError(f"{option} {path} does not fit this model{trained_with}: "
                        f"{_difference(saved, own, False).describe()}") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"{option} {path}: its optimizer state does not fit this model{trained_with}: "
                        f"{first_line(error)}") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and scaler.is_enabled() and "scaler" in state:
        scaler.load_state_dict(state["scaler"])


def load_training_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                        scaler=None) -> dict:
    """Restores what :func:`save_training_state` wrote into the given objects; returns the dict."""
    state = read_training_state(path)
    restore_training_state(path, state, model, optimizer, scheduler, scaler)
    return state
