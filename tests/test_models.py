"""The models: the released architectures' parameter counts and state-dict layout, loading the
released checkpoints (random weights with the released names and shapes), forward shapes at any
size and time, gradients, determinism and mixed precision.

``data/original_state_dict_shapes.json`` lists every entry, with its shape, of the state dicts of
the released MEMC-Net models (read by instantiating them), and their parameter counts.
"""

import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import memc_ops
from memc_models import (
    MEMCNetOutput,
    convert_original_state_dict,
    load_original_checkpoint,
    memc_net,
    memc_net_s,
    memc_net_star,
)
from memc_models.checkpoint import compare_state_dict, read_checkpoint

MANIFEST = json.loads((Path(__file__).parent / "data" / "original_state_dict_shapes.json").read_text())["models"]
FACTORIES = {"MEMC_Net": memc_net, "MEMC_Net_s": memc_net_s, "MEMC_Net_star": memc_net_star}
VARIANTS = list(FACTORIES)

def random_original_state_dict(variant, seed=0):
    """Random tensors under the released names and shapes, scaled like trained weights (so that
    activations neither vanish nor explode through the deep networks)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, shape in MANIFEST[variant]["state_dict"].items():
        if name.endswith("num_batches_tracked"):
            state_dict[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state_dict[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith("running_mean"):
            state_dict[name] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state_dict[name] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        elif name.endswith("weight"):  # batch-norm scale
            state_dict[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state_dict[name] = 0.01 * torch.randn(shape, generator=generator)
    return state_dict


def frames(batch, height, width, seed=0, device="cpu"):
    """Two frames with a shared texture shifted by a few pixels, values in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, height + 8, width + 8, generator=generator)
    base = torch.nn.functional.avg_pool2d(base, 3, 1, 1)
    return base[..., 2 : 2 + height, 3 : 3 + width].to(device), base[..., 5 : 5 + height, 1 : 1 + width].to(device)


@pytest.fixture(scope="module")
def models():
    """One model per variant for the module, loaded from a random released-layout checkpoint,
    in eval mode. Tests that change a model's mode or gradients restore them."""
    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = load_original_checkpoint(random_original_state_dict(variant), variant)
        return cache[variant]

    return get


# --- Architecture and checkpoints -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_the_released_model(variant):
    with torch.device("meta"):
        model = FACTORIES[variant]()
    assert sum(p.numel() for p in model.parameters()) == MANIFEST[variant]["trainable_parameters"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_converter_places_every_released_entry_with_its_shape(variant):
    released = {name: torch.empty(shape, device="meta") for name, shape in MANIFEST[variant]["state_dict"].items()}
    converted, unplaced = convert_original_state_dict(released, variant)
    with torch.device("meta"):
        ours = FACTORIES[variant]().state_dict()
    assert unplaced == []
    assert sorted(converted) == sorted(ours)
    for name, value in converted.items():
        assert value.shape == ours[name].shape, name


@pytest.mark.parametrize(
    "variant, released, ours",
    [
        ("MEMC_Net", "initScaleNets_filter.0.weight", "kernel_net.trunk.encoder.0.convs.0.weight"),
        ("MEMC_Net", "initScaleNets_filter.6.running_var", "kernel_net.trunk.encoder.0.norm.running_var"),
        ("MEMC_Net", "initScaleNets_filter.38.weight", "kernel_net.trunk.middle.norm.weight"),
        ("MEMC_Net", "initScaleNets_filter.64.weight", "kernel_net.trunk.decoder.4.convs.0.weight"),
        ("MEMC_Net", "initScaleNets_occlusion2.2.bias", "mask_net.heads.1.output.bias"),
        ("MEMC_Net", "rectifyNet.14.weight", "post_net.convs.7.weight"),
        ("MEMC_Net", "flownets.deconv4.0.weight", "flow_net.deconv4.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.22.weight", "kernel_net.trunk.middle.convs.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.25.weight", "kernel_net.trunk.decoder.0.convs.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.43.running_mean", "kernel_net.trunk.decoder.4.norm.running_mean"),
        ("MEMC_Net_s", "flownets.moduleBasic.5.moduleBasic.8.bias", "flow_net.levels.5.8.bias"),
        ("MEMC_Net_star", "initScaleNets_occlusion.31.weight", "mask_net.trunk.middle.convs.2.weight"),
        ("MEMC_Net_star", "initScaleNets_filter.54.bias", "kernel_net.trunk.decoder.4.convs.0.bias"),
        ("MEMC_Net_star", "rectifyNet.body.3.body.2.weight", "post_net.blocks.3.conv2.weight"),
        ("MEMC_Net_star", "rectifyNet.body.10.weight", "post_net.body_out.weight"),
        ("MEMC_Net_star", "ctxNet.conv1.weight", "context_net.conv.weight"),
    ],
)
def test_converter_maps_layer_positions_to_blocks(variant, released, ours):
    state_dict = {name: torch.empty(shape, device="meta") for name, shape in MANIFEST[variant]["state_dict"].items()}
    marker = torch.zeros(MANIFEST[variant]["state_dict"][released])
    state_dict[released] = marker
    converted, _ = convert_original_state_dict(state_dict, variant)
    assert converted[ours] is marker


def test_converter_reports_entries_it_cannot_place_and_unwraps_containers():
    state_dict = {f"module.{name}": torch.empty(shape, device="meta") for name, shape in MANIFEST["MEMC_Net_s"]["state_dict"].items()}
    state_dict["module.extra.weight"] = torch.empty(1, device="meta")
    converted, unplaced = convert_original_state_dict({"state_dict": state_dict}, "memc-net_s")
    assert unplaced == ["extra.weight"]
    assert len(converted) == len(MANIFEST["MEMC_Net_s"]["state_dict"])
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_original_checkpoint({"state_dict": state_dict}, "MEMC_Net_s")


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        convert_original_state_dict({}, "MEMC_Net_VE")


@pytest.mark.parametrize(
    "name, variant",
    [("memc", "MEMC_Net"), ("memc_s", "MEMC_Net_s"), ("memc_star", "MEMC_Net_star"), ("memc_net_s", "MEMC_Net_s"),
     ("MEMC-Net*", "MEMC_Net_star"), ("MEMC_Net_s", "MEMC_Net_s")],
)
def test_variants_are_accepted_under_the_command_line_and_factory_names(name, variant):
    state_dict = {entry: torch.empty(shape, device="meta") for entry, shape in MANIFEST[variant]["state_dict"].items()}
    converted, unplaced = convert_original_state_dict(state_dict, name)
    assert unplaced == [] and len(converted) == len(state_dict)
    assert compare_state_dict(state_dict, name).fits


def test_the_readme_example_loads_a_released_file_by_its_command_line_name(tmp_path):
    torch.save(random_original_state_dict("MEMC_Net_s"), tmp_path / "MEMC-Net_s.pth")
    model = load_original_checkpoint(tmp_path / "MEMC-Net_s.pth", "memc_s")
    assert model.config.flow_network == "spynet" and not model.training


def test_loading_a_file_that_is_no_checkpoint_names_it_without_torchs_advice(tmp_path):
    path = tmp_path / "frame.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError) as error:
        load_original_checkpoint(path, "memc_s")
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read it as a PyTorch checkpoint (")
    assert "weights_only" not in message and "\n" not in message


def test_a_pickled_model_is_refused_without_terminal_codes_or_weights_only_advice(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(1, 1), path)
    with pytest.raises(ValueError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert message == (f"{path}: cannot read it as a PyTorch checkpoint (it holds a pickled torch.nn.modules.linear.Linear, "
                       "not only tensors; save a state dict (model.state_dict()) instead)")


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.zeros(3), "it holds a tensor, not a state dict (a dict of names to tensors)"),
        ([torch.zeros(3)], "it holds a list, not a state dict (a dict of names to tensors)"),
        ({}, "it holds an empty dict, not a state dict"),
        ({"a": 1}, "it is not a state dict: entry 'a' holds an int, not a tensor"),
        ({"model": {"a": torch.zeros(1)}, "epoch": 3},
         "it is a memc-train last.pt (model, optimizer, ...), not a state dict: load its weights with "
         "model.load_state_dict(torch.load(path, weights_only=True)['model'])"),
    ],
)
def test_loading_a_file_without_a_state_dict_says_what_it_holds(tmp_path, content, message):
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        load_original_checkpoint(path, "memc_s")


def test_our_own_state_dict_is_refused_with_a_hint_to_load_state_dict():
    with torch.device("meta"):
        ours = memc_net_s().state_dict()
    with pytest.raises(ValueError, match=re.escape(
            "the state dict holds memc_models' own names (as model.state_dict() saves them), not the released ones: "
            "load it with model.load_state_dict(torch.load(path, weights_only=True)) on memc_models.memc_net_s(), "
            "or pass it to memc-interpolate --checkpoint")):
        load_original_checkpoint(ours, "memc_s")


def test_a_released_checkpoint_that_nearly_fits_names_the_first_few_differences():
    state_dict = random_original_state_dict("MEMC_Net_s")
    missing = [name for name in state_dict if name.startswith("flownets.")][:5]
    for name in missing:
        del state_dict[name]
    state_dict["extra.weight"] = torch.zeros(1)
    state_dict["rectifyNet.0.bias"] = torch.zeros(7)
    with pytest.raises(RuntimeError) as error:
        load_original_checkpoint(state_dict, "MEMC_Net_s")
    message = str(error.value)
    assert message.startswith("the state dict does not fit MEMC_Net_s: 1 checkpoint entries have no place in MEMC_Net_s: extra.weight; ")
    assert f"5 weights of MEMC_Net_s are missing from the checkpoint: {', '.join(missing[:3])} and 2 more" in message
    assert "1 checkpoint entries have another shape in MEMC_Net_s: rectifyNet.0.bias (7,) instead of (64,)" in message
    with pytest.warns(UserWarning, match="keeping the model's own values"):
        model = load_original_checkpoint(state_dict, "MEMC_Net_s", strict=False)
    assert model.post_net.convs[0].bias.shape == (64,)


def test_compare_state_dict_lists_differences_in_the_checkpoints_own_naming():
    with torch.device("meta"):
        ours = memc_net_s().state_dict()
    ours["extra.weight"] = torch.zeros(1)
    mismatch = compare_state_dict(ours, "memc_s")
    assert not mismatch.released and mismatch.unexpected == ["extra.weight"] and not mismatch.missing
    assert mismatch.describe() == "1 entry unexpected (extra.weight)"
    released = random_original_state_dict("MEMC_Net_s")
    del released["rectifyNet.0.bias"]
    mismatch = compare_state_dict(released, "memc_s")
    assert mismatch.released and mismatch.missing == ["rectifyNet.0.bias"]


def test_checkpoint_without_batch_norm_counters_loads():
    state_dict = random_original_state_dict("MEMC_Net_s")
    state_dict = {name: value for name, value in state_dict.items() if not name.endswith("num_batches_tracked")}
    model = load_original_checkpoint(state_dict, "MEMC_Net_s")
    assert not model.training
    assert torch.equal(model.kernel_net.trunk.encoder[1].norm.running_var, state_dict["initScaleNets_filter.8.running_var"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_weights_loaded_twice_give_identical_outputs(variant, models, tmp_path):
    first = models(variant)  # loaded from random_original_state_dict(variant)
    torch.save(random_original_state_dict(variant), tmp_path / "released.pth")
    second = load_original_checkpoint(tmp_path / "released.pth", variant)
    frame0, frame1 = frames(1, 64, 64)
    with torch.no_grad():
        expected = first(frame0, frame1)
        assert torch.isfinite(expected).all()
        assert torch.equal(second(frame0, frame1), expected)


def test_own_checkpoints_round_trip_with_weights_only_loading(models):
    trained = models("MEMC_Net_s")
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = memc_net_s().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    frame0, frame1 = frames(1, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(frame0, frame1), trained(frame0, frame1))


def released_unet_layers(variant):
    """The released get_MonoNet5 trunk as the flat layer list its state dict numbers:
    ("conv", c_in, c_out), ("relu",), ("bn",), ("pool",) or ("up",). Skips are pushed at each
    pooling layer and added after each upsampling layer."""
    batch_norm = [("bn",)] if variant != "MEMC_Net_star" else []

    def conv_relu(c_in, c_out):
        return [("conv", c_in, c_out), ("relu",)]

    def conv_relu_maxpool(c_in, c_out):
        return conv_relu(c_in, c_out) + batch_norm + [("pool",)]

    if variant == "MEMC_Net_s":
        layers = conv_relu(6, 16)
        for c_in, c_out in ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512)):
            layers += conv_relu_maxpool(c_in, c_out)
        layers += conv_relu(512, 512)
        for c_in, c_out in ((512, 256), (256, 128), (128, 64), (64, 32), (32, 16)):
            layers += [("up",)] + conv_relu(c_in, c_out) + batch_norm  # upsampling first in MEMC_Net_s
        return layers
    layers = conv_relu(6, 32) + conv_relu(32, 32) + conv_relu_maxpool(32, 32)
    for c_in, c_out in ((32, 64), (64, 128), (128, 256), (256, 512)):
        layers += conv_relu(c_in, c_out) + conv_relu_maxpool(c_out, c_out)
    layers += conv_relu(512, 512) + conv_relu(512, 512)
    for c_in, c_out in ((512, 256), (256, 128), (128, 64), (64, 32), (32, 16)):
        layers += conv_relu(c_in, c_in) + batch_norm + [("up",)] + conv_relu(c_in, c_out)
    return layers


def run_released_unet(layers, state, prefix, x):
    skips = []
    for index, layer in enumerate(layers):
        entry = lambda name: state[f"{prefix}.{index}.{name}"]  # noqa: E731
        if layer[0] == "conv":
            x = F.conv2d(x, entry("weight"), entry("bias"), padding=1)
        elif layer[0] == "relu":
            x = F.relu(x)
        elif layer[0] == "bn":
            x = F.batch_norm(x, entry("running_mean"), entry("running_var"), entry("weight"), entry("bias"))
        elif layer[0] == "pool":
            skips.append(x)
            x = F.max_pool2d(x, 2)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True) + skips.pop()
    return x


def run_released_head(state, prefix, x):
    x = F.relu(F.conv2d(x, state[f"{prefix}.0.weight"], state[f"{prefix}.0.bias"], padding=1))
    return F.conv2d(x, state[f"{prefix}.2.weight"], state[f"{prefix}.2.bias"], padding=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_unets_compute_what_the_released_layer_lists_compute(variant, models):
    released = random_original_state_dict(variant)  # the weights models(variant) was loaded from
    layers = released_unet_layers(variant)
    nets = [("initScaleNets_filter", models(variant).kernel_net)]
    if variant != "MEMC_Net_s":
        nets.append(("initScaleNets_occlusion", models(variant).mask_net))
    frame0, frame1 = frames(1, 32, 32, seed=7)
    for prefix, net in nets:
        # The layer list above numbers exactly the released entries.
        numbered = {f"{prefix}.{i}.{p}" for i, layer in enumerate(layers) if layer[0] == "conv" for p in ("weight", "bias")}
        numbered |= {
            f"{prefix}.{i}.{p}"
            for i, layer in enumerate(layers)
            if layer[0] == "bn"
            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        }
        assert numbered == {name for name in released if name.startswith(prefix + ".")}

        with torch.no_grad():
            trunk = run_released_unet(layers, released, prefix, torch.cat((frame0, frame1), 1))
            expected = (run_released_head(released, prefix + "1", trunk), run_released_head(released, prefix + "2", trunk))
            ours = net(frame0, frame1)
        torch.testing.assert_close(ours[0], expected[0])
        torch.testing.assert_close(ours[1], expected[1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_post_processing_computes_what_the_released_network_computes(variant, models):
    released = random_original_state_dict(variant)
    post_net = models(variant).post_net
    in_channels = 3 + 2 * 2 + 2 * 16 + 2 + (2 * 64 if variant == "MEMC_Net_star" else 0)
    x = torch.rand(1, in_channels, 16, 16)
    conv = lambda x, name: F.conv2d(x, released[f"rectifyNet.{name}.weight"], released[f"rectifyNet.{name}.bias"], padding=1)  # noqa: E731
    if variant == "MEMC_Net_star":  # EDSR: head, 10 residual blocks and a convolution, tail
        y = conv(x, "head.0")
        for block in range(10):
            y = y + conv(F.relu(conv(y, f"body.{block}.body.0")), f"body.{block}.body.2")
        expected = conv(conv(y, "body.10"), "tail.0")
    else:
        y = x
        for layer in range(0, 14, 2):
            y = F.relu(conv(y, layer))
        expected = conv(y, 14)
    with torch.no_grad():
        torch.testing.assert_close(post_net(x), expected)


def test_spynet_warp_samples_the_second_frame_at_x_plus_flow():
    from memc_models.networks.spynet import _backward_warp

    image = torch.rand(2, 3, 6, 7)
    flow = torch.zeros(2, 2, 6, 7)
    torch.testing.assert_close(_backward_warp(image, flow), image)
    flow[:, 0] = 1.0  # one pixel right: the last column samples outside, zeros
    shifted = _backward_warp(image, flow)
    torch.testing.assert_close(shifted[..., :-1], image[..., 1:])
    assert torch.count_nonzero(shifted[..., -1]) == 0
    flow[:, 0], flow[:, 1] = 0.0, -0.5  # half a pixel up: the average of two rows
    torch.testing.assert_close(_backward_warp(image, flow)[..., 1:, :], (image[..., 1:, :] + image[..., :-1, :]) / 2)


# --- Forward, backward, determinism ------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_at_any_size_and_time(variant, models):
    model = models(variant)
    batch, height, width = 2, 50, 60  # neither a multiple of 32 nor of 64
    frame0, frame1 = frames(batch, height, width)
    with torch.no_grad():
        out = model(frame0, frame1, t=0.3, return_intermediates=True)
    assert isinstance(out, MEMCNetOutput)
    assert out.frame.shape == out.blended.shape == (batch, 3, height, width)
    for pair, channels in ((out.warped, 3), (out.flows, 2), (out.motion, 2), (out.kernels, 16)):
        assert len(pair) == 2
        assert all(x.shape == (batch, channels, height, width) for x in pair)
    if variant == "MEMC_Net_s":
        assert out.masks is None
    else:
        assert all(mask.shape == (batch, 1, height, width) for mask in out.masks)
    assert torch.isfinite(out.frame).all()


def test_each_sample_is_interpolated_independently_of_the_batch(models):
    model = models("MEMC_Net_s")
    frame0, frame1 = frames(2, 40, 72, seed=3)
    times = torch.tensor([0.25, 0.7])
    with torch.no_grad():
        together = model(frame0, frame1, t=times)
        alone = model(frame0[1:], frame1[1:], t=0.7)
    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-4)


def test_time_changes_the_projected_flows(models):
    model = models("MEMC_Net_s")
    frame0, frame1 = frames(1, 64, 64, seed=4)
    with torch.no_grad():
        early = model(frame0, frame1, t=0.2, return_intermediates=True)
        late = model(frame0, frame1, t=0.8, return_intermediates=True)
    torch.testing.assert_close(early.motion[0], late.motion[0])
    assert not torch.allclose(early.flows[0], late.flows[0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_mode_is_deterministic(variant, models):
    model = models(variant)
    frame0, frame1 = frames(1, 64, 64, seed=2)
    with torch.no_grad():
        assert torch.equal(model(frame0, frame1, t=0.4), model(frame0, frame1, t=0.4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_reaches_every_parameter(variant, models):
    model = models(variant)
    # SPyNet adds a pyramid level per halving while a side exceeds 32 pixels; 544 wide reaches all six.
    height, width = (32, 544) if variant == "MEMC_Net_s" else (64, 64)
    frame0, frame1 = frames(1, height, width, seed=5)
    model.train()
    try:
        out = model(frame0, frame1, t=0.5, return_intermediates=True)
        out.frame.square().mean().backward()
        for name, param in model.named_parameters():
            if name.startswith("context_net."):
                # As released, the warped context is detached: the extractor stays as loaded.
                assert param.grad is None, name
            else:
                assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_holes_are_filled_only_without_gradients_unless_asked(models, monkeypatch):
    model = models("MEMC_Net_s")
    frame0, frame1 = frames(1, 64, 64, seed=6)
    calls = []
    real = memc_ops.flow_projection

    def spy(flow, *args, **kwargs):
        calls.append(kwargs.get("fill_holes"))
        return real(flow, *args, **kwargs)

    monkeypatch.setattr(memc_ops, "flow_projection", spy)
    with torch.no_grad():
        model(frame0, frame1)
    model(frame0, frame1)  # gradients flow through the projection: holes left empty, as released
    model(frame0, frame1, fill_holes=True)
    assert calls == [True, False, True]


@pytest.mark.parametrize(
    "shapes, t, message",
    [
        (((1, 3, 8, 8), (1, 3, 8, 8)), 1.0, "t must lie in"),
        (((1, 3, 8, 8), (1, 3, 8, 8)), 0.0, "t must lie in"),
        (((1, 4, 8, 8), (1, 4, 8, 8)), 0.5, r"frame0 must have shape \(B, 3, H, W\)"),
        (((1, 3, 8, 8), (1, 3, 8, 9)), 0.5, "frame1 must match frame0"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(models, shapes, t, message):
    model = models("MEMC_Net_s")
    with pytest.raises(ValueError, match=message):
        model(torch.rand(shapes[0]), torch.rand(shapes[1]), t=t)


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (1, 3, 0, 8), (1, 3, 8, 0)])
def test_empty_frames_are_a_value_error(models, shape):
    with pytest.raises(ValueError, match=re.escape(f"frames must not be empty (B, H and W at least 1); got shape {shape}")):
        models("MEMC_Net_s")(torch.rand(shape), torch.rand(shape))


@pytest.mark.parametrize(
    "t, error, message",
    [
        (torch.tensor([0.25, 0.5, 0.75]), ValueError, r"t must be a float or a tensor of 1 or 2 times \(one per sample\); got shape \(3,\)"),
        (torch.tensor([0.25, 1.0]), ValueError, r"every t must lie in \(0, 1\)"),
        ("0.5", TypeError, "t must be a float or a tensor of times; got str"),
        (None, TypeError, "t must be a float or a tensor of times; got NoneType"),
    ],
)
def test_bad_times_are_refused_with_a_message(models, t, error, message):
    with pytest.raises(error, match=message):
        models("MEMC_Net_s")(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), t=t)


def test_frames_that_are_not_tensors_are_a_type_error(models):
    frame = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="frame0 must be a torch.Tensor of shape \\(B, 3, H, W\\); got ndarray"):
        models("MEMC_Net_s")(frame.numpy(), frame)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_frames_in_another_dtype_than_the_model_are_a_type_error_naming_both(models, dtype):
    # Not cast silently: the caller decides whether the frames or the model should change.
    frame0, frame1 = frames(1, 8, 8)
    expected = (
        rf"the frames are {dtype} but the model's parameters are torch.float32; convert the frames "
        rf"\(frame.to\(torch.float32\)\) or the model \(model.to\({dtype}\)\), or run under torch.autocast"
    )
    with pytest.raises(TypeError, match=expected):
        models("MEMC_Net_s")(frame0.to(dtype), frame1.to(dtype))


def test_frames_in_the_models_dtype_run():
    model = memc_net_s().double().eval()
    frame0, frame1 = frames(1, 8, 8)
    with torch.no_grad():
        middle = model(frame0.double(), frame1.double())
    assert middle.dtype == torch.float64 and middle.shape == (1, 3, 8, 8)


def test_frames_on_another_device_than_the_model_are_a_value_error():
    with torch.device("meta"):
        model = memc_net_s()
    frame0, frame1 = frames(1, 8, 8)
    with pytest.raises(ValueError, match=r"the frames are on cpu but the model is on meta; move the frames"):
        model(frame0, frame1)


# --- Mixed precision ---------------------------------------------------------------------------


# bfloat16 convolutions are slow on most CPUs: one variant there keeps the mixed-precision path
# covered without a GPU.
_needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
AUTOCAST_CASES = [("MEMC_Net", "cpu", torch.bfloat16)] + [
    pytest.param(variant, "cuda", dtype, marks=_needs_gpu)
    for variant in VARIANTS
    for dtype in (torch.float16, torch.bfloat16)
]


@pytest.mark.parametrize("variant, device, dtype", AUTOCAST_CASES)
def test_runs_under_autocast(variant, device, dtype, models):
    model = models(variant).to(device)
    try:
        frame0, frame1 = frames(1 if device == "cpu" else 2, 50, 60, device=device)
        with torch.no_grad():
            reference = model(frame0, frame1, t=0.4)
            with torch.autocast(device, dtype=dtype):
                mixed = model(frame0, frame1, t=0.4, return_intermediates=True)
        assert mixed.kernels[0].dtype == dtype  # the networks did run in reduced precision
        assert mixed.frame.shape == reference.shape
        assert torch.isfinite(mixed.frame).all()
        # Random weights amplify rounding; the point is that it runs and stays close.
        error = (mixed.frame.float() - reference).abs().mean()
        assert error < 0.1 * reference.abs().mean() + 0.05
    finally:
        model.cpu()
