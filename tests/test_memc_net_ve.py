"""MEMC-Net_VE, the enhancement model: the released architecture's parameter count and
state-dict layout, loading the released SR / DN / DB checkpoints (random weights with the
released names and shapes), the 7-slot window at clip ends, the restoration network's input in
the released order, forward shapes at any size, gradients.

``data/original_ve_state_dict_shapes.json`` lists every entry, with its shape, of the released
MEMC_Net_VE state dict (derived from networks/MEMC_Net_VE.py), and its parameter count.
"""

import json
import re
from pathlib import Path

import pytest
import torch

import memc_ops
from memc_models import MEMCNetVE, MEMCNetVEOutput, load_original_checkpoint, memc_net, memc_net_ve
from memc_models.checkpoint import compare_state_dict, original_names
from memc_models.memc_net_ve import window_slots
from helpers import assert_converter_places_every_released_entry, random_original_state_dict

MANIFEST = json.loads((Path(__file__).parent / "data" / "original_ve_state_dict_shapes.json").read_text())["models"]


def window(batch, count, height, width, seed=0):
    """``count`` frames of one smooth texture drifting by (1, 2) pixels a frame: (B, T, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, height + 3 * count, width + 3 * count, generator=generator), 3, 1, 1)
    return torch.stack([base[..., 2 * t : 2 * t + height, t : t + width] for t in range(count)], 1)


@pytest.fixture(scope="module")
def model():
    """MEMC-Net_VE loaded from a random released-layout checkpoint, in eval mode."""
    return load_original_checkpoint(random_original_state_dict("MEMC_Net_VE", manifest=MANIFEST), "MEMC_Net_VE")


# --- Architecture and checkpoints -------------------------------------------------------------


def test_parameter_count_matches_the_released_model():
    with torch.device("meta"):
        net = memc_net_ve()
    assert sum(p.numel() for p in net.parameters()) == MANIFEST["MEMC_Net_VE"]["trainable_parameters"] == 56_619_491


def test_converter_places_every_released_entry_with_its_shape():
    assert_converter_places_every_released_entry("MEMC_Net_VE", memc_net_ve, MANIFEST)


@pytest.mark.parametrize(
    "released, ours",
    [
        ("initScaleNets_filter.0.weight", "kernel_net.trunk.encoder.0.convs.0.weight"),
        ("initScaleNets_filter.6.running_var", "kernel_net.trunk.encoder.0.norm.running_var"),
        ("initScaleNets_filter1.0.weight", "kernel_net.heads.0.hidden.weight"),
        ("initScaleNets_filter1.2.bias", "kernel_net.heads.0.output.bias"),
        ("rectifyNet.head.0.weight", "post_net.head.weight"),
        ("rectifyNet.body.9.body.2.weight", "post_net.blocks.9.conv2.weight"),
        ("rectifyNet.body.10.bias", "post_net.body_out.bias"),
        ("flownets.predict_flow2.weight", "flow_net.predict_flow2.weight"),
        ("ctxNet.conv1.weight", "context_net.conv.weight"),
    ],
)
def test_released_names_map_to_ours(released, ours):
    with torch.device("meta"):
        names = original_names(memc_net_ve())
    assert names[ours] == released


def test_kernel_unet_is_memc_nets_with_one_head():
    # The trunk is MEMC-Net's (same released names and shapes); only the second head is gone.
    with torch.device("meta"):
        interpolation, enhancement = memc_net(), memc_net_ve()
    trunk = lambda net: {k: v.shape for k, v in net.kernel_net.trunk.state_dict().items()}  # noqa: E731
    assert trunk(interpolation) == trunk(enhancement)
    assert len(interpolation.kernel_net.heads) == 2 and len(enhancement.kernel_net.heads) == 1


@pytest.mark.parametrize("file_name, variant", [("MEMC-Net_SR.pth", "MEMC-Net_SR"), ("MEMC-Net_DN.pth", "MEMC_Net_DN"),
                                                ("MEMC-Net_DB.pth", "memc_ve")])
def test_released_enhancement_checkpoints_load(file_name, variant, tmp_path, model):
    torch.save(random_original_state_dict("MEMC_Net_VE", manifest=MANIFEST), tmp_path / file_name)
    loaded = load_original_checkpoint(tmp_path / file_name, variant)
    assert isinstance(loaded, MEMCNetVE) and not loaded.training
    frames = window(1, 7, 64, 64)
    with torch.no_grad():
        expected = model(frames)
        assert torch.isfinite(expected).all()
        assert torch.equal(loaded(frames), expected)


def test_load_enhancement_model_reads_our_own_state_dict(tmp_path, model):
    # (The released layout: test_memc_enhance_with_a_checkpoint_writes_what_the_model_restores.)
    from memc_models.checkpoint import load_enhancement_model

    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    loaded = load_enhancement_model(path)
    assert isinstance(loaded, MEMCNetVE) and not loaded.training
    frames = window(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(frames), model(frames))


def test_memc_enhance_with_a_checkpoint_writes_what_the_model_restores(tmp_path, model):
    from helpers import iio
    from memc_models.cli.enhance import main
    from memc_models.images import read_image

    frames = (window(1, 3, 24, 32)[0] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    (tmp_path / "frames").mkdir()
    for k, pixels in enumerate(frames):
        iio.imwrite(tmp_path / "frames" / f"{k}.png", pixels)
    checkpoint = tmp_path / "MEMC-Net_DN.pth"
    torch.save(random_original_state_dict("MEMC_Net_VE", manifest=MANIFEST), checkpoint)
    out = tmp_path / "out"
    assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "denoise", "--checkpoint", str(checkpoint), "-q"]) == 0
    inputs = torch.stack([read_image(str(tmp_path / "frames" / f"{k}.png"))[0] for k in range(3)])
    with torch.no_grad():
        for k in range(3):  # each frame from the window of all three (the clip's ends)
            expected = model(inputs.unsqueeze(0), k)[0].clamp(0, 1)
            written = read_image(str(out / f"{k:05d}.png"))[0]
            assert (written - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_a_checkpoint_of_another_variant_is_refused_naming_the_differences():
    interpolation = random_original_state_dict("MEMC_Net")
    with pytest.raises(RuntimeError, match=r"the state dict does not fit MEMC_Net_VE: 124 checkpoint entries have no place in MEMC_Net_VE: initScaleNets_filter2"):
        load_original_checkpoint(interpolation, "MEMC-Net_SR")
    assert compare_state_dict(random_original_state_dict("MEMC_Net_VE", manifest=MANIFEST), "MEMC_Net_VE").fits


def test_own_state_dict_is_refused_with_advice_to_use_load_state_dict():
    with torch.device("meta"):
        own = memc_net_ve().state_dict()
    with pytest.raises(ValueError, match=r"holds memc_models' own names .* on memc_models.memc_net_ve\(\), "
                       r"or pass it to memc-enhance --checkpoint$"):
        load_original_checkpoint(own, "MEMC_Net_VE")


# --- The window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "count, centre, slots",
    [
        (7, 3, [0, 1, 2, 3, 4, 5, 6]),
        (4, 0, [3, 2, 1, 0, 1, 2, 3]),  # clip start: the future mirrored into the past
        (4, 3, [0, 1, 2, 3, 2, 1, 0]),  # clip end
        (5, 1, [4, 3, 0, 1, 2, 3, 4]),
        (3, 1, [0, 0, 0, 1, 2, 2, 2]),  # nothing to mirror: the nearest frame on each side
        (3, 0, [2, 2, 1, 0, 1, 2, 2]),
    ],
)
def test_window_slots_fill_seven_slots_with_real_neighbours(count, centre, slots):
    assert window_slots(count, centre) == slots


@pytest.mark.parametrize("count", [3, 4, 5, 6, 7])
def test_no_neighbour_slot_holds_the_centre(count):
    for centre in range(count):
        slots = window_slots(count, centre)
        assert slots[3] == centre
        assert all(0 <= s < count and s != centre for k, s in enumerate(slots) if k != 3)


@pytest.mark.parametrize("count, centre, message", [(2, 0, "2 to 6 neighbours"), (8, 3, "2 to 6 neighbours"), (4, 4, "centre must index")])
def test_bad_windows_are_refused(count, centre, message):
    with pytest.raises(ValueError, match=message):
        window_slots(count, centre)


def test_a_short_window_is_the_full_window_with_its_slots_filled(model):
    frames = window(1, 3, 40, 56, seed=1)
    full = frames[:, [0, 0, 0, 1, 2, 2, 2]]
    with torch.no_grad():
        torch.testing.assert_close(model(frames, centre=1), model(full), rtol=1e-4, atol=1e-5)


# --- Forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count, centre", [(7, None), (5, 0), (3, 2)])
def test_forward_shapes_at_any_size(model, count, centre):
    batch, height, width = 2, 50, 70  # not multiples of 64
    frames = window(batch, count, height, width)
    with torch.no_grad():
        out = model(frames, centre, return_intermediates=True)
    assert isinstance(out, MEMCNetVEOutput)
    assert out.frame.shape == (batch, 3, height, width)
    assert len(out.warped) == len(out.flows) == len(out.kernels) == 6 and len(out.slots) == 7
    assert all(x.shape == (batch, 3, height, width) for x in out.warped)
    assert all(x.shape == (batch, 2, height, width) for x in out.flows)
    assert all(x.shape == (batch, 16, height, width) for x in out.kernels)
    assert torch.isfinite(out.frame).all()


def test_frames_as_a_list_are_the_same_as_stacked(model):
    frames = window(1, 5, 32, 48, seed=2)
    with torch.no_grad():
        assert torch.equal(model(list(frames.unbind(1))), model(frames))


def test_restoration_input_is_contexts_flows_kernels_frames_in_slot_order(model, monkeypatch):
    frames = window(1, 7, 64, 64, seed=3)
    seen = {}
    real_post = model.post_net.forward

    def spy(x):
        seen["input"] = x
        return real_post(x)

    monkeypatch.setattr(model.post_net, "forward", spy)
    with torch.no_grad():
        out = model(frames, return_intermediates=True)
        x = seen["input"]
        assert x.shape[1] == 7 * 64 + 6 * 2 + 6 * 16 + 7 * 3 == 577
        contexts, flows, kernels, images = x.split((7 * 64, 12, 96, 21), 1)
        centre = frames[:, 3]
        torch.testing.assert_close(contexts[:, 3 * 64 : 4 * 64], model.context_net(centre))
        warped_context = memc_ops.adaptive_warp(model.context_net(frames[:, 0]), out.flows[0], out.kernels[0])
        torch.testing.assert_close(contexts[:, :64], warped_context)
        torch.testing.assert_close(flows, torch.cat(out.flows, 1))
        torch.testing.assert_close(kernels, torch.cat(out.kernels, 1))
        torch.testing.assert_close(images[:, 9:12], centre)
        torch.testing.assert_close(images[:, :3], out.warped[0])
        torch.testing.assert_close(images[:, 18:], out.warped[5])
        torch.testing.assert_close(out.frame, centre + model.post_net(x))


def test_flows_point_from_the_centre_to_each_neighbour(model, monkeypatch):
    # FlowNetS sees (centre, neighbour) stacked on the channels: centre first.
    frames = window(1, 7, 64, 64, seed=4)
    pairs = []
    real = model.flow_net.forward
    monkeypatch.setattr(model.flow_net, "forward", lambda x: pairs.append(x) or real(x))
    with torch.no_grad():
        model(frames)
    (stacked,) = pairs
    assert stacked.shape == (6, 6, 64, 64)
    for k, neighbour in enumerate([0, 1, 2, 4, 5, 6]):
        assert torch.equal(stacked[k, :3], frames[0, 3])
        assert torch.equal(stacked[k, 3:], frames[0, neighbour])


def test_backward_reaches_every_parameter(model):
    frames = window(1, 7, 64, 64, seed=5)
    model.train()
    try:
        model(frames).square().mean().backward()
        for name, param in model.named_parameters():
            # The centre's context is not detached (as released): the extractor learns too.
            assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_eval_mode_is_deterministic(model):
    frames = window(1, 7, 48, 48, seed=6)
    with torch.no_grad():
        assert torch.equal(model(frames), model(frames))


@pytest.mark.parametrize(
    "frames, centre, error, message",
    [
        (torch.rand(1, 7, 4, 8, 8), None, ValueError, re.escape("frames must have shape (B, T, 3, H, W); got (1, 7, 4, 8, 8)")),
        (torch.rand(1, 2, 3, 8, 8), None, ValueError, "3 to 7 frames"),
        (torch.rand(1, 8, 3, 8, 8), None, ValueError, "3 to 7 frames"),
        (torch.rand(1, 5, 3, 8, 8), 5, ValueError, "centre must index one of the 5 frames"),
        (torch.rand(1, 5, 3, 8, 8), 2.0, TypeError, "centre must be an int"),
        (torch.zeros(1, 5, 3, 8, 8, dtype=torch.uint8), None, TypeError, "floating-point"),
        ([torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9), torch.rand(1, 3, 8, 8)], None, ValueError, "one shape"),
        ("frames", None, TypeError, "frames must be a torch.Tensor"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(model, frames, centre, error, message):
    with pytest.raises(error, match=message):
        model(frames, centre)
