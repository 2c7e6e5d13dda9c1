"""The training-free path (memc_models.classical): its accuracy on a real photograph under a known
motion, its self-ensemble and bicubic kernels, which frames, times and settings it accepts, and the
errors for the rest."""

import pytest
import torch

import memc_ops
from helpers import HEIGHT, WIDTH, frame_at, to_tensor
from memc_models import classical
from memc_models.classical import (
    ClassicalConfig,
    ClassicalInterpolator,
    PairMotion,
    bicubic_kernel,
    dis_flow,
    dis_flows,
    working_size,
)
from memc_models.metrics import interpolation_error

pytest.importorskip("cv2")


def frames(batch=1, height=24, width=32, seed=0):
    """Two frames with a shared smooth texture shifted by a few pixels, values in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, height + 8, width + 8, generator=generator), 3, 1, 1)
    return base[..., 2 : 2 + height, 3 : 3 + width].contiguous(), base[..., 5 : 5 + height, 1 : 1 + width].contiguous()


@pytest.fixture(scope="module")
def fast():
    return ClassicalInterpolator(ClassicalConfig(orientations=1))


# --- Frames ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_integer_frames_are_a_type_error_as_for_memcnet(fast, dtype):
    frame0, frame1 = frames()
    with pytest.raises(TypeError, match=rf"frame0 must be a floating-point tensor in \[0, 1\]; got {dtype}"):
        fast((frame0 * 255).to(dtype), (frame1 * 255).to(dtype))


@pytest.mark.parametrize(
    "scale, offset, message",
    [
        (255.0, 0.0, r"frame0 must hold RGB values in \[0, 1\]; got values from .* \(8-bit frames: divide by 255\)"),
        (2.0, -1.0, r"frame0 must hold RGB values in \[0, 1\]; got values from -"),
        (float("nan"), 0.0, "frame0 holds NaN"),
    ],
)
def test_float_frames_clearly_outside_0_1_are_a_value_error(fast, scale, offset, message):
    frame0, frame1 = frames()
    with pytest.raises(ValueError, match=message):
        fast(frame0 * scale + offset, frame1)


def test_a_slight_overshoot_of_0_1_is_accepted(fast):
    frame0, frame1 = frames()
    frame0 = frame0 * 1.1 - 0.05  # as after a sharpening resampling filter
    assert fast(frame0, frame1).shape == frame0.shape


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_output_has_the_frames_dtype(fast, dtype):
    frame0, frame1 = frames()
    middle = fast(frame0.to(dtype), frame1.to(dtype))
    assert middle.dtype == dtype
    # Rounding can move DIS's 8-bit input, and so a flow vector, here and there: close on average.
    assert (middle.float() - fast(frame0, frame1)).abs().mean() < 0.01


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda a, b: (a[:0], b[:0]), ValueError, r"frames must not be empty .*got shape \(0, 3, 24, 32\)"),
        (lambda a, b: (a[:, :, :0], b[:, :, :0]), ValueError, r"frames must not be empty"),
        (lambda a, b: (a, b.double()), ValueError, "frame1 must match frame0"),
        (lambda a, b: (a[:, :1], b[:, :1]), ValueError, r"frame0 must have shape \(B, 3, H, W\)"),
        (lambda a, b: (a.numpy(), b.numpy()), TypeError, "frame0 must be a torch.Tensor"),
    ],
)
def test_bad_frames_are_refused_with_a_message(fast, make, error, message):
    with pytest.raises(error, match=message):
        fast(*make(*frames()))


# --- Times -------------------------------------------------------------------------------------


def test_per_sample_times_give_what_each_sample_gets_alone(fast):
    frame0, frame1 = frames(batch=2)
    both = fast(frame0, frame1, torch.tensor([0.25, 0.75]))
    assert both.shape == (2, 3, 24, 32)
    for k, t in enumerate((0.25, 0.75)):
        alone = fast(frame0[k : k + 1], frame1[k : k + 1], t)
        torch.testing.assert_close(both[k : k + 1], alone, atol=1e-5, rtol=0)


def test_per_sample_times_work_with_the_self_ensemble():
    frame0, frame1 = frames(batch=2)
    ensemble = ClassicalInterpolator(ClassicalConfig(orientations=2))
    both = ensemble.interpolate(frame0, frame1, [torch.tensor([0.25, 0.75]), 0.5])
    torch.testing.assert_close(both[0][1:], ensemble(frame0[1:], frame1[1:], 0.75), atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1][:1], ensemble(frame0[:1], frame1[:1], 0.5), atol=1e-5, rtol=0)


def test_a_one_element_time_tensor_equals_the_float(fast):
    frame0, frame1 = frames(batch=2)
    assert torch.equal(fast(frame0, frame1, torch.tensor(0.5)), fast(frame0, frame1, 0.5))


def test_interpolate_takes_a_single_time_as_a_list_of_one(fast):
    frame0, frame1 = frames()
    single = fast.interpolate(frame0, frame1, 0.5)
    assert isinstance(single, list) and len(single) == 1
    assert torch.equal(single[0], fast.interpolate(frame0, frame1, [0.5])[0])


@pytest.mark.parametrize(
    "t, error, message",
    [
        (0.0, ValueError, r"t must lie in \(0, 1\); got 0.0"),
        (1.5, ValueError, r"t must lie in \(0, 1\); got 1.5"),
        (torch.tensor([0.25, 1.0]), ValueError, r"every t must lie in \(0, 1\)"),
        (torch.tensor([0.25, 0.5, 0.75]), ValueError, r"t must be a float or a tensor of 1 or 2 times"),
        ("0.5", TypeError, "t must be a float or a tensor of times; got str"),
    ],
)
def test_bad_times_are_refused_with_a_message(fast, t, error, message):
    frame0, frame1 = frames(batch=2)
    with pytest.raises(error, match=message):
        fast(frame0, frame1, t)


# --- Motion ------------------------------------------------------------------------------------


def test_dis_flows_of_several_pairs_are_each_pairs_dis_flow():
    # Computed together on a thread pool, including a batch of two and a frame below DIS's minimum.
    pairs = [frames(), frames(batch=2, seed=1), frames(height=9, width=11, seed=2)]
    pairs.append(pairs[0][::-1])
    together = dis_flows(pairs)
    assert [tuple(flow.shape) for flow in together] == [(1, 2, 24, 32), (2, 2, 24, 32), (1, 2, 9, 11), (1, 2, 24, 32)]
    for (frame0, frame1), flow in zip(pairs, together):
        torch.testing.assert_close(flow, dis_flow(frame0, frame1), atol=0, rtol=0)
    for sample in range(2):  # each sample of a batch is its own DIS problem
        alone = dis_flow(pairs[1][0][sample : sample + 1], pairs[1][1][sample : sample + 1])
        torch.testing.assert_close(together[1][sample : sample + 1], alone, atol=0, rtol=0)


@pytest.mark.parametrize("settings", [dict(), dict(**{"max_flow_pixels": 192})], ids=["own-size", "resized"])
def test_motion_flows_are_dis_flows_of_each_orientations_frames(settings):
    # The motion makes each frame grey once and flips the grey frames: the same bits as DIS on
    # the flipped frames themselves.
    frame0, frame1 = frames(batch=2)
    motion = ClassicalInterpolator(ClassicalConfig(**settings)).motion(frame0, frame1)
    small0, small1 = motion.frames.chunk(2, 0)
    for dims, flows in zip(classical._ORIENTATIONS, motion.flows):
        oriented0, oriented1 = classical._flip(small0, dims), classical._flip(small1, dims)
        expected = torch.cat(dis_flows([(oriented0, oriented1), (oriented1, oriented0)]), 0)
        assert torch.equal(flows, expected)


def test_ensemble_gives_the_same_frames_with_dis_on_one_thread(monkeypatch):
    frame0, frame1 = frames(height=32, width=40)
    ensemble = ClassicalInterpolator()
    pooled = ensemble.interpolate(frame0, frame1, [0.3, 0.5])
    calls = []
    real = classical._dis_calc

    def one_by_one(jobs, preset, finest_scale):
        calls.append(len(jobs))
        return [real([job], preset, finest_scale)[0] for job in jobs]

    monkeypatch.setattr(classical, "_dis_calc", one_by_one)
    serial = ensemble.interpolate(frame0, frame1, [0.3, 0.5])
    assert calls == [8]  # both directions in every orientation at once
    for a, b in zip(pooled, serial):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# --- One pair's motion, many times ------------------------------------------------------------

# 24 x 32 frames with at most 192 pixels of motion: estimated at 12 x 16 and resized.
RESIZED = dict(max_flow_pixels=192)


@pytest.mark.parametrize("settings", [dict(orientations=1), dict(), dict(orientations=1, **RESIZED), dict(**RESIZED)],
                         ids=["fast", "ensemble", "fast-resized", "ensemble-resized"])
def test_several_times_are_bit_for_bit_each_time_alone_from_one_motion_estimate(settings, monkeypatch):
    frame0, frame1 = frames(batch=2)
    path = ClassicalInterpolator(ClassicalConfig(**settings))
    times = [0.25, 0.5, torch.tensor([0.3, 0.7]), 0.75]
    calls = []
    real = classical._dis_calc
    monkeypatch.setattr(classical, "_dis_calc", lambda *args: calls.append(1) or real(*args))
    together = path.interpolate(frame0, frame1, times)
    assert len(calls) == 1  # every time from the one estimate (all orientations in one call)
    for t, frame in zip(times, together):
        assert torch.equal(frame, path(frame0, frame1, t))
    assert len(calls) == 1 + len(times)


def test_render_of_the_motion_is_interpolate_and_reuses_it():
    frame0, frame1 = frames()
    path = ClassicalInterpolator()
    motion = path.motion(frame0, frame1)
    assert isinstance(motion, PairMotion) and motion.size == (24, 32) and motion.working_size == (24, 32)
    assert len(motion.flows) == len(motion.occluded) == 4
    assert motion.flows[0].shape == (2, 2, 24, 32) and motion.occluded[0].shape == (2, 1, 24, 32)
    first = path.render(frame0, frame1, motion, [0.5])
    assert torch.equal(first[0], path(frame0, frame1, 0.5))
    assert torch.equal(path.render(frame0, frame1, motion, 0.5)[0], first[0])  # the motion is not used up


@pytest.mark.parametrize(
    "other, message",
    [
        (dict(frames=frames(height=16, width=32)), r"it is for 24x32 frames in 4 orientations; got 16x32 frames"),
        (dict(config=ClassicalConfig(orientations=1)),
         r"it is for 24x32 frames in 4 orientations; got 24x32 frames and 1 orientations"),
    ],
)
def test_render_refuses_motion_of_other_frames_or_settings(other, message):
    frame0, frame1 = frames()
    motion = ClassicalInterpolator().motion(frame0, frame1)
    path = ClassicalInterpolator(other.get("config", ClassicalConfig()))
    with pytest.raises(ValueError, match="motion must be estimated from these frames with this configuration: " + message):
        path.render(*other.get("frames", (frame0, frame1)), motion, [0.5])


# --- Working resolution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, max_pixels, expected",
    [
        (1080, 1920, 640 * 480, (415, 739)),
        (2160, 3840, 640 * 480, (415, 739)),
        (720, 1280, 640 * 360, (360, 640)),
        (480, 640, 640 * 480, (480, 640)),  # within the cap: as given
        (1080, 1920, None, (1080, 1920)),
        (1000, 10, 100, (100, 1)),  # never below one pixel a side
    ],
)
def test_working_size_keeps_the_aspect_ratio_within_the_pixel_cap(height, width, max_pixels, expected):
    size = working_size(height, width, max_pixels)
    assert size == expected
    assert max_pixels is None or size[0] * size[1] <= max(max_pixels, size[0] + size[1])


def test_large_frames_have_their_motion_estimated_at_the_working_resolution():
    frame0, frame1 = frames(height=48, width=64)
    path = ClassicalInterpolator(ClassicalConfig(orientations=2, max_flow_pixels=768))
    motion = path.motion(frame0, frame1)
    assert motion.size == (48, 64) and motion.working_size == (24, 32)
    assert motion.frames.shape == (2, 3, 24, 32) and motion.flows[1].shape == (2, 2, 24, 32)
    middle = path.render(frame0, frame1, motion, 0.5)[0]
    assert middle.shape == frame0.shape and (middle >= 0).all() and (middle <= 1).all()


def test_the_working_resolution_finds_the_motion_of_large_frames():
    # A pure translation by (6, -4) pixels between 96 x 128 frames, its motion estimated at
    # 48 x 64 (3, -2 there): the middle frame is the texture moved by (3, -2).
    generator = torch.Generator().manual_seed(3)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 30, 38, generator=generator), size=(120, 152),
                                              mode="bicubic", align_corners=False).clamp(0, 1)
    frame0, middle, frame1 = (texture[..., 12 - dy : 108 - dy, 12 + dx : 140 + dx] for dx, dy in ((0, 0), (3, -2), (6, -4)))
    for orientations in (1, 4):
        path = ClassicalInterpolator(ClassicalConfig(orientations=orientations, max_flow_pixels=48 * 64))
        ours = path(frame0.contiguous(), frame1.contiguous(), 0.5)
        inner = (..., slice(10, -10), slice(10, -10))
        average = 0.5 * (frame0 + frame1)
        assert (ours - middle)[inner].abs().mean() < 0.2 * (average - middle)[inner].abs().mean()


def test_resized_ensemble_is_mirror_symmetric_up_to_rounding():
    frame0, frame1 = frames(height=48, width=64)
    path = ClassicalInterpolator(ClassicalConfig(max_flow_pixels=768))
    ours = path(frame0, frame1, 0.5)
    for dims in ((3,), (2,), (2, 3)):
        mirrored = path(frame0.flip(dims), frame1.flip(dims), 0.5)
        torch.testing.assert_close(mirrored.flip(dims), ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("orientations", [1, 2, 4])
def test_resized_weights_of_frames_and_orientations_sum_to_one(orientations):
    # A flat colour, still: every warp is that colour, so the result is too when the weights of
    # both frames in every orientation, resized to full size, add up to 1 per pixel.
    colour = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)
    frame = colour.expand(1, 3, 48, 64).contiguous()
    path = ClassicalInterpolator(ClassicalConfig(orientations=orientations, max_flow_pixels=768))
    for t in (0.3, 0.5):
        torch.testing.assert_close(path(frame, frame, t), frame, atol=1e-6, rtol=0)


def test_resized_flow_is_resampled_and_scaled_to_the_new_size():
    # A uniform motion of (1, 2) pixels at 6 x 8 is (3, 4) pixels at 12 x 24, everywhere.
    uniform = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(2, 2, 6, 8)
    expected = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(2, 2, 12, 24)
    assert torch.equal(classical._resize_flow(uniform, (12, 24)), expected)
    # Any field: scaled before resampling, the bilinear resampling of the field scaled after, up to rounding.
    flow = torch.randn(2, 2, 7, 9) * 5
    expected = torch.nn.functional.interpolate(flow, size=(19, 25), mode="bilinear", align_corners=False)
    expected = expected * torch.tensor([25 / 9, 19 / 7]).view(1, 2, 1, 1)
    torch.testing.assert_close(classical._resize_flow(flow, (19, 25)), expected, rtol=1e-6, atol=1e-5)


def test_resized_ensemble_stays_close_to_blending_full_size_frames():
    # The ensemble's and step 5's weights are resampled to full size rather than the visibility
    # and disagreement they come from: the frames differ only where those change.
    frame0, frame1 = frames(height=48, width=64)
    path = ClassicalInterpolator(ClassicalConfig(max_flow_pixels=768))
    motion = path.motion(frame0, frame1)
    ours = path.render(frame0, frame1, motion, 0.5)[0]
    blends = [classical._AgreementBlend(path.config.agreement_scale)]
    small = motion.frames
    for dims, flows, occluded in zip(classical._ORIENTATIONS, motion.flows, motion.occluded):
        (_, (back, visible), disagreement), = path._render_once(classical._flip(small, dims), flows, occluded, [0.5],
                                                               ensemble=True)
        to0, to1 = classical._flip_flow(back, dims).chunk(2, 0)
        warps = torch.cat((path._warp(frame0, classical._resize_flow(to0, (48, 64))),
                           path._warp(frame1, classical._resize_flow(to1, (48, 64)))), 0)
        frame = classical._blend(warps, classical._resize(classical._flip(visible, dims), (48, 64)), 0.5)
        blends[0].add(frame, classical._resize(classical._flip(disagreement, dims), (48, 64)))
    blended = blends[0].result().clamp(0, 1)
    assert (ours - blended).abs().mean() < 2e-3


def test_resized_path_runs_on_device(device):
    frame0, frame1 = frames(height=48, width=64)
    path = ClassicalInterpolator(ClassicalConfig(max_flow_pixels=768))
    ours = path(frame0.to(device), frame1.to(device), 0.5)
    assert ours.device.type == device.type
    torch.testing.assert_close(ours.cpu(), path(frame0, frame1, 0.5), atol=2e-3, rtol=0)


def test_frames_of_other_sizes_in_between_change_nothing():
    path = ClassicalInterpolator(ClassicalConfig(orientations=1, max_flow_pixels=768))
    large, small = frames(height=48, width=64), frames(height=24, width=32, seed=1)
    first = path(*large)
    path(*small)
    assert torch.equal(path(*large), first)
    assert torch.equal(path(*small), ClassicalInterpolator(path.config)(*small))


def test_bicubic_warp_is_adaptive_warp_with_the_bicubic_kernel():
    # The path's warp (memc_ops.bicubic_warp) against the public kernel through adaptive_warp.
    frame = frames(height=24, width=32)[0]
    back = torch.randn(1, 2, 24, 32) * 3
    ours = ClassicalInterpolator()._warp(frame, back)
    torch.testing.assert_close(ours, memc_ops.adaptive_warp(frame, back, bicubic_kernel(back)), rtol=1e-5, atol=1e-6)


def test_flows_turned_back_from_a_flipped_orientation():
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    flow[0, :, 1, 3] = torch.tensor([0.5, 3.0])
    turned = classical._flip_flow(flow, (3,))
    assert turned[0, 0, 1, 1] == -0.5 and turned[0, 1, 1, 1] == 3.0  # column 3 of 5 lands on column 1
    assert (turned[0, 0] != 0).all() and turned[0, 0, 0, 0] == -2.0 and turned[0, 1, 0, 0] == -1.0
    for dims in ((), (3,), (2,), (2, 3)):
        assert torch.equal(classical._flip_flow(classical._flip_flow(flow, dims), dims), flow)


# --- Settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_flow_pixels", [0, -5, 2.5, True, "640"])
def test_max_flow_pixels_must_be_none_or_a_positive_integer(max_flow_pixels):
    with pytest.raises(ValueError, match=r"max_flow_pixels must be None or a positive integer; got "):
        ClassicalConfig(max_flow_pixels=max_flow_pixels)


def test_max_flow_pixels_none_estimates_at_the_frames_size():
    frame0, frame1 = frames(height=48, width=64)
    assert ClassicalInterpolator(ClassicalConfig(max_flow_pixels=None)).motion(frame0, frame1).working_size == (48, 64)


@pytest.mark.parametrize("finest_scale", [-1, 1.5, True, "0"])
def test_finest_scale_must_be_none_or_a_non_negative_integer(finest_scale):
    message = r"finest_scale must be None or an integer >= 0 \(0: full resolution\); got "
    with pytest.raises(ValueError, match=message):
        ClassicalConfig(finest_scale=finest_scale)
    frame0, frame1 = frames()
    with pytest.raises(ValueError, match=message):
        dis_flow(frame0, frame1, finest_scale=finest_scale)


@pytest.mark.parametrize("finest_scale", [None, 0, 2])
def test_valid_finest_scales_run(finest_scale):
    frame0, frame1 = frames()
    middle = ClassicalInterpolator(ClassicalConfig(finest_scale=finest_scale, orientations=1))(frame0, frame1)
    assert middle.shape == frame0.shape and torch.isfinite(middle).all()


@pytest.mark.parametrize("settings", [dict(consistency_alpha=-1.0), dict(consistency_beta=-0.5)])
def test_consistency_tolerances_must_not_be_negative(settings):
    with pytest.raises(ValueError, match="consistency_alpha and consistency_beta must be >= 0"):
        ClassicalConfig(**settings)


def test_default_path_beats_frame_averaging():
    first, middle, second = (to_tensor(frame_at(t)) for t in (0.0, 0.5, 1.0))
    ours = ClassicalInterpolator()(first, second, 0.5)
    ours_ie = interpolation_error(ours, middle)
    average_ie = interpolation_error(0.5 * (first + second), middle)
    assert ours.shape == first.shape
    assert ours_ie < 0.5 * average_ie, (ours_ie, average_ie)


def test_several_times_are_each_close_to_their_truth():
    first, second = to_tensor(frame_at(0.0)), to_tensor(frame_at(1.0))
    times = [0.25, 0.75]
    outputs = ClassicalInterpolator().interpolate(first, second, times)
    for t, output in zip(times, outputs):
        truth = to_tensor(frame_at(t))
        blend = (1 - t) * first + t * second
        assert interpolation_error(output, truth) < 0.6 * interpolation_error(blend, truth), t


def test_default_path_runs_on_device(device):
    first, second = to_tensor(frame_at(0.0)).to(device), to_tensor(frame_at(1.0)).to(device)
    cpu = ClassicalInterpolator()(first.cpu(), second.cpu(), 0.5)
    ours = ClassicalInterpolator()(first, second, 0.5)
    assert ours.device == first.device
    torch.testing.assert_close(ours.cpu(), cpu, atol=2e-3, rtol=0)


def test_self_ensemble_is_mirror_symmetric():
    # The four orientations form a group under mirroring: interpolating mirrored frames gives the
    # mirrored frame, whatever DIS does on each orientation.
    first, second = to_tensor(frame_at(0.0)), to_tensor(frame_at(1.0))
    ours = ClassicalInterpolator()(first, second, 0.5)
    for dims in ((3,), (2,), (2, 3)):
        mirrored = ClassicalInterpolator()(first.flip(dims), second.flip(dims), 0.5)
        torch.testing.assert_close(mirrored.flip(dims), ours, atol=1e-6, rtol=0)


def test_self_ensemble_is_a_per_pixel_blend_of_the_orientations():
    first, second = to_tensor(frame_at(0.0)), to_tensor(frame_at(1.0))
    single = ClassicalInterpolator(ClassicalConfig(orientations=1))
    oriented = torch.stack([single(first.flip(d), second.flip(d), 0.5).flip(d) if d else single(first, second, 0.5)
                            for d in ((), (3,), (2,), (2, 3))])
    ours = ClassicalInterpolator()(first, second, 0.5)
    assert (ours >= oriented.amin(0) - 1e-6).all() and (ours <= oriented.amax(0) + 1e-6).all()
    assert not torch.equal(ours, oriented[0])


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (8, 8), (64, 3), (5, 40)])
def test_frames_smaller_than_dis_accepts_are_interpolated(size):
    first, second = torch.rand(2, 1, 3, *size, generator=torch.Generator().manual_seed(0))
    outputs = ClassicalInterpolator().interpolate(first, second, [0.25, 0.5])
    for output in outputs:
        assert output.shape == first.shape and torch.isfinite(output).all()
        assert (output >= 0).all() and (output <= 1).all()


def test_agreement_blend_is_a_softmax_weighted_mean_that_never_underflows():
    from memc_models.classical import _AgreementBlend

    frames = [torch.full((1, 3, 2, 2), v) for v in (0.2, 0.4, 0.9)]
    disagreements = [torch.tensor([[0.5, 0.1], [0.3, 0.3]]).view(1, 1, 2, 2) + d for d in (0.0, 0.2, -0.1)]
    for scale in (0.03, 1.0, 1e-4):
        blend = _AgreementBlend(scale)
        for frame, disagreement in zip(frames, disagreements):
            blend.add(frame, disagreement)
        weights = torch.softmax(-torch.stack(disagreements).double() / scale, 0)
        expected = (weights * torch.stack(frames).double()).sum(0).float()
        torch.testing.assert_close(blend.result(), expected)
    # At a tiny scale every weight but the best's is exp(-1000): the best frame, not 0/0.
    assert torch.allclose(blend.result(), frames[2])


@pytest.mark.parametrize("settings", [dict(orientations=3), dict(agreement_scale=0.0), dict(agreement_radius=-1),
                                      dict(kernel="lanczos"), dict(preset="slow"), dict(occluded_weight=0.0)])
def test_bad_settings_are_an_error(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        ClassicalConfig(**settings)


def keys_cubic(x: float) -> float:
    x = abs(x)
    return 1.5 * x**3 - 2.5 * x**2 + 1 if x <= 1 else -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2 if x < 2 else 0.0


def test_bicubic_kernel_is_the_product_of_per_axis_weights():
    # Tap (row, col) is the row's weight times the column's; offsets -1 and 2 share one weight, so
    # the last row and column repeat the first, bit for bit.
    flow = torch.randn(2, 2, 7, 9, generator=torch.Generator().manual_seed(0)) * 3
    kernel = bicubic_kernel(flow)
    a = torch.stack((flow[:, 0] + torch.arange(9.0), flow[:, 1] + torch.arange(7.0).view(7, 1)), 1).remainder(1.0)
    g = 1.0 - a
    per_axis = [-0.5 * a * g, 1.0 + a * (1.0 - 1.5 * a), 1.0 + g * (1.0 - 1.5 * g), -0.5 * a * g]
    for row in range(4):
        for col in range(4):
            torch.testing.assert_close(kernel[:, row * 4 + col], per_axis[row][:, 1] * per_axis[col][:, 0],
                                       atol=1e-6, rtol=0)
    taps = kernel.view(2, 4, 4, 7, 9)
    assert torch.equal(taps[:, 3], taps[:, 0]) and torch.equal(taps[:, :, 3], taps[:, :, 0])


def test_bicubic_kernel_reproduces_bicubic_interpolation():
    # A whole-image subpixel shift through adaptive_warp with the bicubic kernel equals Keys'
    # cubic convolution (a = -0.5), written out here as a sum of shifted copies, inside the frame.
    image = to_tensor(frame_at(0.0)).double()
    dx, dy = 0.3, -0.6
    flow = torch.zeros(1, 2, HEIGHT, WIDTH, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = dx, dy
    warped = memc_ops.adaptive_warp(image, flow, bicubic_kernel(flow))
    # Targets x + 0.3 -> column x, fraction 0.3; y - 0.6 -> row y - 1, fraction 0.4.
    a, b, first_col, first_row = 0.3, 0.4, -1, -2
    col_weights = [keys_cubic(1 + a), keys_cubic(a), keys_cubic(1 - a), keys_cubic(2 - a)]
    row_weights = [keys_cubic(1 + b), keys_cubic(b), keys_cubic(1 - b), keys_cubic(2 - b)]
    margin = 4
    inner = (slice(None), slice(None), slice(margin, HEIGHT - margin), slice(margin, WIDTH - margin))
    expected = torch.zeros_like(image[inner])
    for r, wy in enumerate(row_weights):
        for c, wx in enumerate(col_weights):
            rows = slice(margin + first_row + r, HEIGHT - margin + first_row + r)
            cols = slice(margin + first_col + c, WIDTH - margin + first_col + c)
            expected += wy * wx * image[:, :, rows, cols]
    torch.testing.assert_close(warped[inner], expected, atol=1e-9, rtol=0)
