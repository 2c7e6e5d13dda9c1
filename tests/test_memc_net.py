"""The networks (memc_models.memc_net, memc_models.networks): the released architectures'
parameter counts, layers that compute what the released layer lists compute, forward shapes at any
size and time, gradients, determinism, input checks and mixed precision. Checkpoint loading and
conversion are tested in test_checkpoint.py."""

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

import memc_ops
from helpers import FACTORIES, MANIFEST, RELEASED_VARIANTS as VARIANTS, random_original_state_dict
from helpers import shifted_frames as frames
from memc_models import RELEASE_OPTIONS, MEMCNetOutput, load_original_checkpoint, memc_net_s, release_padding
from memc_models.memc_net import RUNTIME_OPTIONS, MEMCNetConfig


# --- Architecture and checkpoints -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_the_released_model(variant):
    with torch.device("meta"):
        model = FACTORIES[variant]()
    assert sum(p.numel() for p in model.parameters()) == MANIFEST[variant]["trainable_parameters"]


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


def projection_calls(monkeypatch):
    """The keyword arguments of each memc_ops.flow_projection call from now on."""
    calls = []
    real = memc_ops.flow_projection

    def spy(flow, *args, **kwargs):
        calls.append(kwargs)
        return real(flow, *args, **kwargs)

    monkeypatch.setattr(memc_ops, "flow_projection", spy)
    return calls


def test_holes_are_filled_only_without_gradients_unless_asked(models, monkeypatch):
    model = models("MEMC_Net_s")
    frame0, frame1 = frames(1, 64, 64, seed=6)
    calls = projection_calls(monkeypatch)
    with torch.no_grad():
        model(frame0, frame1)
    model(frame0, frame1)  # gradients flow through the projection: holes left empty, as released
    model(frame0, frame1, fill_holes=True)
    assert [call["fill_holes"] for call in calls] == [True, False, True]


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


# --- Release mode: the authors' padding and hole fill -----------------------------------------


@pytest.mark.parametrize(
    "size, ends",
    [
        (64, (32, 32)),  # up to 128
        (128, (32, 32)),  # already a multiple of 128: 32 on both ends anyway
        (480, (16, 16)),  # up to 512
        (640, (32, 32)),  # a multiple of 128
        (388, (62, 62)),  # up to 512
        (389, (61, 62)),  # odd total: the smaller half first
        (584, (28, 28)),  # up to 640
    ],
)
def test_release_padding_follows_the_released_evaluation_script(size, ends):
    assert release_padding(size, 100) == (14, 14, *ends)  # width 100: up to 128
    assert release_padding(100, size) == (*ends, 14, 14)


def test_release_padding_pads_640x480_to_704x512():
    left, right, top, bottom = release_padding(480, 640)
    assert (640 + left + right, 480 + top + bottom) == (704, 512)


@pytest.mark.parametrize("variant", VARIANTS)
def test_released_weights_load_configured_as_the_release(variant, models):
    config = models(variant).config
    assert (config.padding, config.fill_from_below) == ("release", False)
    assert {name: getattr(config, name) for name in RELEASE_OPTIONS} == RELEASE_OPTIONS


def test_released_weights_load_with_our_defaults_when_asked():
    model = load_original_checkpoint(random_original_state_dict("MEMC_Net_s"), "MEMC_Net_s", as_released=False)
    assert (model.config.padding, model.config.fill_from_below) == ("minimal", True)
    assert (memc_net_s().config.padding, memc_net_s().config.fill_from_below) == ("minimal", True)


def _network_input_sizes(model, frame0, frame1):
    """The (H, W) the flow network sees first, and the output."""
    seen = {}

    def record(module, args):
        seen.setdefault("size", tuple(args[0].shape[-2:]))

    hook = model.flow_net.register_forward_pre_hook(record)
    try:
        with torch.no_grad():
            output = model(frame0, frame1)
    finally:
        hook.remove()
    return seen["size"], output


@pytest.mark.parametrize("padding, expected", [("release", (128, 256)), ("minimal", (64, 192))])
def test_the_flow_network_sees_the_padded_frames(padding, expected):
    model = load_original_checkpoint(random_original_state_dict("MEMC_Net"), "MEMC_Net").configure(padding=padding)
    frame0, frame1 = frames(1, 60, 150)
    size, output = _network_input_sizes(model, frame0, frame1)
    assert size == expected and output.shape == (1, 3, 60, 150)


def test_the_projection_is_asked_to_fill_from_below_as_configured(monkeypatch):
    model = load_original_checkpoint(random_original_state_dict("MEMC_Net_s"), "MEMC_Net_s")
    frame0, frame1 = frames(1, 64, 64, seed=6)
    calls = projection_calls(monkeypatch)
    with torch.no_grad():
        model(frame0, frame1)
        model.configure(fill_from_below=True)(frame0, frame1)
    assert [call["fill_from_below"] for call in calls] == [False, True]


def test_the_same_weights_with_our_defaults_give_other_frames_until_configured_as_released():
    state_dict = random_original_state_dict("MEMC_Net_s", seed=3)
    released = load_original_checkpoint(state_dict, "MEMC_Net_s")
    ours = load_original_checkpoint(state_dict, "MEMC_Net_s", as_released=False)
    frame0, frame1 = frames(1, 60, 90, seed=4)
    with torch.no_grad():
        expected = released(frame0, frame1)
        # The padding differs (60x90 -> 128x128 released, 64x96 ours), so the flows differ.
        assert not torch.allclose(ours(frame0, frame1), expected, atol=1e-4)
        assert torch.equal(ours.configure(**RELEASE_OPTIONS)(frame0, frame1), expected)


# A value other than the default for each option configure takes: a new option needs one here.
OTHER_VALUES = {"padding": "release", "fill_from_below": False}


def _configure_takes(name):
    try:
        memc_net_s().configure(**{name: None})  # None keeps the option as it is
    except TypeError:
        return False
    return True


def test_configure_takes_exactly_the_options_a_state_dict_records_and_they_survive_it():
    recorded = memc_net_s().state_dict()._metadata[""]["memc_options"]
    taken = {field.name for field in dataclasses.fields(MEMCNetConfig) if _configure_takes(field.name)}
    assert taken == set(recorded) == set(RUNTIME_OPTIONS) == set(OTHER_VALUES)
    assert set(RELEASE_OPTIONS) <= taken
    for name, value in OTHER_VALUES.items():
        source = memc_net_s().configure(**{name: value})
        loaded = memc_net_s()
        loaded.load_state_dict(source.state_dict())
        assert getattr(loaded.config, name) == value != getattr(memc_net_s().config, name)
        assert loaded.config == source.config


def test_configure_refuses_what_shapes_the_parameters_and_unknown_names():
    with pytest.raises(TypeError, match=r"configure\(\) takes padding and fill_from_below; got 'kernel_size' \(it "
                                        r"shapes the parameters: build another model\)"):
        memc_net_s().configure(kernel_size=2)
    with pytest.raises(TypeError, match=r"configure\(\) takes padding and fill_from_below; got 'paddding'$"):
        memc_net_s().configure(paddding="release")


@pytest.mark.parametrize("options, message", [
    ({"padding": "128"}, "padding must be 'minimal' or 'release'"),
    ({"fill_from_below": 1}, "fill_from_below must be True or False"),
])
def test_bad_release_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        memc_net_s().configure(**options)
