"""The flow projection layer of MEMC-Net (and DAIN's depth-aware variant): its Python face,
autograd and fake kernel."""

import numbers
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._checks import check_bool, check_same_device, check_tensor

__all__ = ["FlowProjection", "flow_projection", "project_to_time"]


def flow_projection(
    flow: Tensor, weight: Optional[Tensor] = None, fill_holes: bool = True, fill_from_below: bool = True
) -> Tensor:
    """Projects a flow from the source frame to the intermediate time, reversing it.

    Args:
        flow: (B, 2, H, W) displacement in pixels of each source pixel to the intermediate time
            (channel 0 horizontal, 1 vertical); for time t, pass t times the frame-to-frame flow
            (or use :func:`project_to_time`).
        weight: optional (B, 1, H, W) positive weight per source pixel, e.g. inverse depth
            (DAIN's depth-aware projection: near objects win). Every value must be positive and
            finite; otherwise a ``ValueError`` is raised. That check reads the values (on a GPU,
            one synchronisation) and is skipped inside ``torch.compile``; there, and in the raw op
            ``torch.ops.memc.flow_projection``, such sources are skipped as if they left the frame.
        fill_holes: fill the pixels that receive nothing from their nearest projected neighbours.
        fill_from_below: let the nearest projected pixel below a hole take part in its fill (the
            default). ``False`` is the released CUDA kernel's fill, which searches left, right and
            above only: its downward search is written ``while(down_temp = 0.0f && ...)``, an
            assignment, so it never runs. Use ``False`` to reproduce the released models exactly.

    Returns:
        (B, 2, H, W) flow at the intermediate time pointing back to the source frame; same dtype,
        device and memory layout as ``flow``.

    Definition, with w(y) = weight(y) (1 when no weight is given):

    * Splatting: every source pixel y whose target p = y + flow(y) lies in [0, W-1] x [0, H-1]
      adds w(y) * (-flow(y)) and w(y) to each of the four pixels {floor(p_x), min(floor(p_x)+1, W-1)}
      x {floor(p_y), min(floor(p_y)+1, H-1)} (equal shares, as released; at the last row or column
      a pixel receives twice). NaN targets are not projected.
    * Averaging: a pixel that received anything takes sum / total weight.
    * Hole filling (``fill_holes=True``): a pixel that received nothing takes the mean of the
      averages of the nearest received pixels to its left, right, above and below (those that
      exist); with none at all it stays 0. With ``fill_from_below=False`` the pixel below is
      left out (left, right and above only, as the released kernel computes; a hole whose only
      received neighbour lies below stays 0). Without hole filling, holes are 0.

    The gradient is exact with respect to ``flow`` and ``weight``, through the hole filling too
    (the released kernels drop that path): which pixels are hit, and which neighbours fill a
    hole, are piecewise constant in the flow and contribute nothing (gradients of gradients are not
    implemented: a backward through one raises a RuntimeError). The cost is O(B * H * W),
    also for frames with large holes. float16 and bfloat16 are accumulated in float32. On CUDA
    the splatting uses atomic float additions, so the forward's last bits may vary between runs.
    Other inputs raise TypeError (not a tensor, ``fill_holes`` not a bool), ValueError (shape,
    dtype or weight values) or RuntimeError (device), naming the argument.
    """
    check_tensor("flow_projection", "flow", flow, "(B, 2, H, W)")
    if weight is not None:
        check_tensor("flow_projection", "weight", weight, "(B, 1, H, W) or None")
        check_same_device("flow_projection", "flow", flow, weight=weight)
    check_bool("flow_projection", "fill_holes", fill_holes)
    check_bool("flow_projection", "fill_from_below", fill_from_below)
    if weight is not None and not torch.compiler.is_compiling():
        _check_weight_values(weight)
    output, _ = torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
    return output


def project_to_time(
    flow_0to1: Tensor,
    t: Union[float, Tensor],
    weight: Optional[Tensor] = None,
    fill_holes: bool = True,
    fill_from_below: bool = True,
) -> Tensor:
    """The flow at time t in (0, 1) pointing back to frame 0: ``flow_projection(t * flow_0to1, ...)``.

    Args:
        flow_0to1: (B, 2, H, W) flow from frame 0 to frame 1.
        t: a number in [0, 1], or a tensor of shape (), (B,) or (B, 1, 1, 1) for one time per
            sample (B = 1: one time for all; its values are not checked; a (B,) or (B, 1, 1, 1)
            tensor must be on the device of ``flow_0to1``). For the flow back to frame 1, pass the flow
            from frame 1 to frame 0 and 1 - t.
        weight, fill_holes, fill_from_below: as for :func:`flow_projection`.

    Returns:
        (B, 2, H, W) flow at time t, in the dtype of ``flow_0to1``.
    """
    check_tensor("project_to_time", "flow_0to1", flow_0to1, "(B, 2, H, W)")
    if isinstance(t, Tensor):
        shape = tuple(t.shape)
        if t.dim() == 1:
            t = t.view(-1, 1, 1, 1)
        if not (t.dim() == 0 or (t.dim() == 4 and t.shape[1:] == (1, 1, 1))):
            raise ValueError(f"project_to_time: t must be a number or a tensor of shape (), (B,) or (B, 1, 1, 1); "
                             f"got shape {shape}")
        if t.dim() == 4 and flow_0to1.dim() == 4 and t.shape[0] not in (1, flow_0to1.shape[0]):
            raise ValueError(f"project_to_time: t must hold one time per sample of flow_0to1 (B = {flow_0to1.shape[0]}); "
                             f"got shape {shape}")
        if t.dim() == 4:  # a 0-dim t may stay on the CPU, as for any scalar
            check_same_device("project_to_time", "flow_0to1", flow_0to1, t=t)
    elif isinstance(t, numbers.Real):
        if not 0 <= t <= 1:
            raise ValueError(f"project_to_time: t must lie in [0, 1]; got {t}")
    else:
        raise TypeError(f"project_to_time: t must be a number or a tensor; got {type(t).__name__}")
    return flow_projection((t * flow_0to1).to(flow_0to1.dtype), weight, fill_holes, fill_from_below)


def _check_weight_values(weight: Tensor) -> None:
    # Shapes and dtypes are checked by the op itself; the values need a look at the data (on a GPU,
    # one synchronisation), which the kernels avoid: they skip unusable sources instead.
    if weight.is_floating_point() and weight.numel() > 0:
        bad = ~(torch.isfinite(weight) & (weight > 0))
        if bool(bad.any()):
            count = int(bad.sum())
            raise ValueError(
                f"flow_projection: weight must be positive and finite (it divides the projected sums); "
                f"got {count} value(s) that are zero, negative, infinite or NaN, e.g. {weight[bad][0].item()}"
            )


def _opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("memc::flow_projection")
def _flow_projection_fake(flow: Tensor, weight: Optional[Tensor], fill_holes: bool, fill_from_below: bool = True):
    batch, _, height, width = flow.shape
    projected = flow.new_empty((batch, 3, height, width), dtype=_opmath_dtype(flow.dtype))
    return torch.empty_like(flow), projected


@torch.library.register_fake("memc::flow_projection_backward")
def _flow_projection_backward_fake(grad_output: Tensor, flow: Tensor, weight: Optional[Tensor], projected: Tensor,
                                   fill_holes: bool, fill_from_below: bool = True,
                                   output_mask: Sequence[bool] = (True, True)):
    # A gradient not asked for (or for an absent weight) comes back as an empty tensor.
    grad_flow = torch.empty_like(flow) if output_mask[0] else flow.new_empty((0,))
    grad_weight = torch.empty_like(weight) if weight is not None and output_mask[1] else flow.new_empty((0,))
    return grad_flow, grad_weight


def _setup_context(ctx, inputs, output):
    flow, weight, fill_holes, fill_from_below = inputs
    _, projected = output
    ctx.mark_non_differentiable(projected)
    # projected never has a gradient: without this, autograd would fill a zero tensor of its
    # size for every backward (at 2x256x448, 2.75 MB: about a tenth of the backward's time).
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(flow, weight, projected)
    ctx.fill_holes = fill_holes
    ctx.fill_from_below = fill_from_below


def _backward(ctx, grad_output, grad_projected):
    flow, weight, projected = ctx.saved_tensors
    if grad_output is None:
        return None, None, None, None
    need_flow, need_weight = ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1]
    grad_flow, grad_weight = torch.ops.memc.flow_projection_backward.default(
        grad_output, flow, weight, projected, ctx.fill_holes, ctx.fill_from_below, [need_flow, need_weight]
    )
    return (grad_flow if need_flow else None), (grad_weight if need_weight else None), None, None


torch.library.register_autograd("memc::flow_projection", _backward, setup_context=_setup_context)


class FlowProjection(nn.Module):
    """``nn.Module`` form of :func:`flow_projection` (no parameters): ``forward(flow, weight=None)``."""

    def __init__(self, fill_holes: bool = True, fill_from_below: bool = True):
        super().__init__()
        check_bool("FlowProjection", "fill_holes", fill_holes)
        check_bool("FlowProjection", "fill_from_below", fill_from_below)
        self.fill_holes = fill_holes
        self.fill_from_below = fill_from_below

    def forward(self, flow: Tensor, weight: Optional[Tensor] = None) -> Tensor:
        return flow_projection(flow, weight, self.fill_holes, self.fill_from_below)

    def extra_repr(self) -> str:
        return f"fill_holes={self.fill_holes}, fill_from_below={self.fill_from_below}"
