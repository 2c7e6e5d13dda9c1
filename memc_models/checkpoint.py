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
from typing import Callable, Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor

from .memc_net import MEMCNet, memc_net, memc_net_s, memc_net_star
from .networks import FlowNetS, PostProcessNet, ResidualPostProcessNet, SPyNet, TwoHeadUNet

__all__ = ["VARIANTS", "convert_original_state_dict", "load_original_checkpoint", "original_names"]

#: Our factory for each variant, by its name in the released code.
VARIANTS: Dict[str, Callable[[], MEMCNet]] = {
    "MEMC_Net": memc_net,
    "MEMC_Net_s": memc_net_s,
    "MEMC_Net_star": memc_net_star,
}


def _variant(name: str) -> str:
    key = name.strip().replace("-", "_").replace("*", "_star").lower()
    for variant in VARIANTS:
        if variant.lower() == key:
            return variant
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (or memc_net, memc_net_s, memc_net_star); got {name!r}")


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
    for head_index, suffix in enumerate(("1", "2")):
        for layer, position in (("hidden", 0), ("output", 2)):
            for param in ("weight", "bias"):
                names[f"{ours}.heads.{head_index}.{layer}.{param}"] = f"{theirs}{suffix}.{position}.{param}"
    return names


def _block_path(net: TwoHeadUNet, block) -> str:
    for name, module in net.trunk.named_modules():
        if module is block:
            return name
    raise AssertionError("block not in trunk")


def original_names(model: MEMCNet) -> Dict[str, str]:
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
    if model.mask_net is not None:
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


def _unwrap(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    # Checkpoints saved from nn.DataParallel prefix every name with "module.".
    return {re.sub(r"^module\.", "", name): value for name, value in state_dict.items()}


def convert_original_state_dict(
    state_dict: Mapping[str, Tensor], variant: str, model: MEMCNet = None
) -> Tuple[Dict[str, Tensor], List[str]]:
    """Renames a released state dict to ours.

    Args:
        state_dict: the released checkpoint (a state dict, possibly under a ``"state_dict"`` key
            or with ``"module."`` prefixes).
        variant: ``"MEMC_Net"``, ``"MEMC_Net_s"`` or ``"MEMC_Net_star"`` (``memc_net`` etc. and
            ``MEMC-Net*`` are accepted too).
        model: the model whose names to use (default: a new model of the variant, on the meta
            device, so nothing is allocated).

    Returns:
        (converted, unplaced): our names -> the released tensors, and the released names that
        correspond to no entry of ours (empty for the released checkpoints).
    """
    variant = _variant(variant)
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
) -> MEMCNet:
    """Builds the ``variant`` model and loads a released MEMC-Net checkpoint into it.

    Args:
        path_or_state_dict: a released ``.pth`` file or its state dict.
        variant: ``"MEMC_Net"``, ``"MEMC_Net_s"`` or ``"MEMC_Net_star"`` (or ``memc_net``,
            ``memc_net_s``, ``memc_net_star``).
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
    """
    variant = _variant(variant)
    if isinstance(path_or_state_dict, Mapping):
        state_dict = path_or_state_dict
    else:
        state_dict = torch.load(path_or_state_dict, map_location=map_location, weights_only=weights_only)
    model = VARIANTS[variant]()
    converted, unplaced = convert_original_state_dict(state_dict, variant, model)
    own = model.state_dict()
    missing = [name for name in own if name not in converted and not name.endswith("num_batches_tracked")]
    problems = []
    if unplaced:
        problems.append(f"{len(unplaced)} checkpoint entries have no place in {variant}: {', '.join(unplaced)}")
    if missing:
        problems.append(f"{len(missing)} weights of {variant} are missing from the checkpoint: {', '.join(missing)}")
    if problems:
        if strict:
            raise RuntimeError("; ".join(problems))
        warnings.warn("; ".join(problems))
    for name, value in own.items():
        converted.setdefault(name, value)
    model.load_state_dict(converted, strict=True)
    return model.eval()
