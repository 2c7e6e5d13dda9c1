"""Loading the authors' released MEMC-Net checkpoints into :class:`memc_models.MEMCNet`.

The released models (``networks/MEMC_Net.py``, ``MEMC_Net_s.py``, ``MEMC_Net_star.py``) keep
their U-Nets as flat lists of layers, so their state-dict names are layer positions
(``initScaleNets_filter.26.weight``); ours name blocks (``kernel_net.trunk.encoder.4.convs.0.weight``).
The map between the two is derived from our modules, walking each U-Net's blocks in the order
the released list holds them: per convolution two entries (conv, ReLU), then the batch norm if
any, then the pooling or upsampling layer between blocks.
"""

import os
import re
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Tuple, Union

import torch
from torch import Tensor

from .memc_net import MEMCNet, memc_net, memc_net_s, memc_net_star
from .memc_net_ve import MEMCNetVE, memc_net_ve
from .networks import FlowNetS, PostProcessNet, ResidualPostProcessNet, SPyNet, TwoHeadUNet

__all__ = [
    "VARIANTS",
    "StateDictMismatch",
    "compare_state_dict",
    "convert_original_state_dict",
    "is_training_state",
    "load_original_checkpoint",
    "original_names",
    "read_checkpoint",
]

#: Our factory for each variant, by its name in the released code.
VARIANTS: Dict[str, Callable[[], Union[MEMCNet, MEMCNetVE]]] = {
    "MEMC_Net": memc_net,
    "MEMC_Net_s": memc_net_s,
    "MEMC_Net_star": memc_net_star,
    "MEMC_Net_VE": memc_net_ve,  # the enhancement model: MEMC-Net_SR.pth, _DN.pth and _DB.pth
}

# Other spellings of each variant (lower case, "-" as "_", "*" as "_star"): our factories' names
# and the command-line tools' --model names.
_ALIASES = {
    "memc_net": "MEMC_Net", "memc": "MEMC_Net",
    "memc_net_s": "MEMC_Net_s", "memc_s": "MEMC_Net_s",
    "memc_net_star": "MEMC_Net_star", "memc_star": "MEMC_Net_star",
    "memc_net_ve": "MEMC_Net_VE", "memc_ve": "MEMC_Net_VE",
    # The released enhancement checkpoints share one architecture; their file names work as variants.
    "memc_net_sr": "MEMC_Net_VE", "memc_net_dn": "MEMC_Net_VE", "memc_net_db": "MEMC_Net_VE",
}  # fmt: skip

# How many names an error message lists before "and N more".
_NAMES_SHOWN = 3


def _variant(name: str) -> str:
    key = str(name).strip().replace("-", "_").replace("*", "_star").lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(
        f"variant must be one of {', '.join(VARIANTS)} (or memc, memc_s, memc_star, memc_ve as the command-line tools "
        f"name them, or memc_net, memc_net_s, memc_net_star, or MEMC_Net_SR, MEMC_Net_DN, MEMC_Net_DB for the "
        f"enhancement model); got {name!r}"
    )


def _some(names: Iterable[str]) -> str:
    """The first few names, and how many more."""
    names = list(names)
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"


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
            return f"it holds a pickled {pickled.group(1)}, not only tensors; save a state dict (model.state_dict()) instead"
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
        raise ValueError(f"{os.fspath(path)}: cannot read it as a PyTorch checkpoint ({_load_problem(error)})") from None


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
    ``"module."`` prefixes; anything but a mapping unchanged."""
    if not isinstance(state_dict, Mapping):
        return state_dict
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    return {re.sub(r"^module\.", "", str(name)): value for name, value in state_dict.items()}


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
    variant = _variant(variant)
    state = _unwrap(state_dict)
    problem = _state_dict_problem(state)
    if problem is not None:
        raise ValueError(problem)
    with torch.device("meta"):
        model = VARIANTS[variant]()
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
    variant = _variant(variant)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a state dict (a mapping of names to tensors); got {_kind(state_dict)}")
    if model is None:
        with torch.device("meta"):
            model = VARIANTS[variant]()
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
) -> Union[MEMCNet, MEMCNetVE]:
    """Builds the ``variant`` model and loads a released MEMC-Net checkpoint into it.

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

    Returns:
        The model, in eval mode. Save it with ``torch.save(model.state_dict(), path)`` and load
        that with ``model.load_state_dict(torch.load(path, weights_only=True))``.

    Raises:
        ValueError: the file cannot be read, or holds no state dict, or holds our own names
            (a saved ``model.state_dict()``: load that with ``model.load_state_dict``).
        RuntimeError: with ``strict``, the checkpoint does not fit the variant; the message
            names the first few entries that differ.
    """
    variant = _variant(variant)
    if isinstance(path_or_state_dict, Mapping):
        state_dict, where = path_or_state_dict, "the state dict"
    else:
        state_dict = read_checkpoint(path_or_state_dict, map_location=map_location, weights_only=weights_only)
        where = os.fspath(path_or_state_dict)
    problem = _state_dict_problem(_unwrap(state_dict))
    if problem is not None:
        raise ValueError(f"{where}: {problem}")
    model = VARIANTS[variant]()
    own = model.state_dict()
    converted, unplaced = convert_original_state_dict(state_dict, variant, model)
    if not converted and any(name in own for name in unplaced):
        raise ValueError(
            f"{where} holds memc_models' own names (as model.state_dict() saves them), not the released ones: "
            f"load it with model.load_state_dict(torch.load(path, weights_only=True)) on memc_models.{VARIANTS[variant].__name__}(), "
            f"or pass it to {'memc-enhance' if variant == 'MEMC_Net_VE' else 'memc-interpolate'} --checkpoint"
        )
    missing = [name for name in own if name not in converted and not name.endswith("num_batches_tracked")]
    wrong_shape = [name for name, value in converted.items() if value.shape != own[name].shape]
    names = original_names(model)
    problems = []
    if unplaced:
        problems.append(f"{len(unplaced)} checkpoint entries have no place in {variant}: {_some(unplaced)}")
    if missing:
        problems.append(f"{len(missing)} weights of {variant} are missing from the checkpoint: {_some(names.get(n, n) for n in missing)}")
    if wrong_shape:
        shapes = [f"{names[n]} {tuple(converted[n].shape)} instead of {tuple(own[n].shape)}" for n in wrong_shape]
        problems.append(f"{len(shapes)} checkpoint entries have another shape in {variant}: {_some(shapes)}")
    if problems:
        message = f"{where} does not fit {variant}: " + "; ".join(problems)
        if strict:
            raise RuntimeError(message)
        warnings.warn(message + " (keeping the model's own values for those)")
    for name in wrong_shape:
        del converted[name]
    for name, value in own.items():
        converted.setdefault(name, value)
    model.load_state_dict(converted, strict=True)
    return model.eval()
