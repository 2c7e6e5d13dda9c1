"""The training-free enhancement path: the robust temporal merge, denoising a moving texture,
the noise estimate, super-resolution, and the reproducible degradations of the evaluation."""

import math

import pytest
import torch
import torch.nn.functional as F

from memc_models import enhancement
from memc_models.enhancement import (
    add_gaussian_noise,
    bicubic_downscale,
    dct_denoise,
    degrade,
    denoise,
    enhance,
    estimate_noise_sigma,
    h264_compress,
    quality,
    super_resolve,
    temporal_merge,
)

pytest.importorskip("cv2")


def texture(height, width, seed=0):
    """A clean picture: smooth colour regions, fine texture and a few sharp edges, in [0.1, 0.9]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, height // 16 + 2, width // 16 + 2, generator=generator), size=(height, width),
                           mode="bicubic", align_corners=False)
    fine = F.avg_pool2d(torch.rand(1, 3, height + 2, width + 2, generator=generator), 3, 1)
    ys = torch.arange(height).view(-1, 1)
    xs = torch.arange(width).view(1, -1)
    edges = (((xs // 24) + (ys // 24)) % 2).float().view(1, 1, height, width)
    return (0.1 + 0.8 * (0.5 * coarse + 0.25 * fine + 0.25 * edges)).clamp(0, 1)[0]


def moving_clip(count, height, width, step=(2, 1), seed=0):
    """``count`` frames of one texture moving by ``step`` (x, y) pixels a frame: (T, 3, H, W)."""
    margin = 3 * count
    big = texture(height + 2 * margin, width + 2 * margin, seed)
    frames = [big[:, margin + t * step[1] : margin + t * step[1] + height, margin + t * step[0] : margin + t * step[0] + width]
              for t in range(count)]
    return torch.stack(frames)


# --- The temporal merge ------------------------------------------------------------------------


def test_merge_returns_the_centre_exactly_when_every_neighbour_is_the_centre():
    centre = torch.rand(3, 20, 24)
    merged = temporal_merge(centre, centre.expand(4, -1, -1, -1).clone(), sigma=20 / 255)
    assert torch.equal(merged.frame, centre)
    assert torch.equal(merged.weights, torch.ones(4, 1, 20, 24))  # they do count: the noise ratio drops
    torch.testing.assert_close(merged.noise_ratio, torch.full((1, 20, 24), math.sqrt(5) / 5))


def test_a_neighbour_that_disagrees_everywhere_never_changes_the_result():
    generator = torch.Generator().manual_seed(1)
    centre = torch.rand(3, 20, 24, generator=generator)
    stranger = (centre + 0.5).remainder(1.0)  # differs by 0.5 everywhere: far beyond any noise
    alone = temporal_merge(centre, stranger.unsqueeze(0), sigma=20 / 255)
    assert torch.equal(alone.frame, centre)
    assert torch.count_nonzero(alone.weights) == 0
    torch.testing.assert_close(alone.noise_ratio, torch.ones(1, 20, 24))

    agreeing = (centre + 0.02 * torch.randn(3, 20, 24, generator=generator)).unsqueeze(0)
    with_stranger = temporal_merge(centre, torch.cat((agreeing, stranger.unsqueeze(0))), sigma=20 / 255)
    without = temporal_merge(centre, agreeing, sigma=20 / 255)
    assert torch.equal(with_stranger.frame, without.frame)


def test_invalid_samples_get_no_weight():
    centre = torch.rand(3, 8, 8)
    valid = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    valid[..., :4] = True
    merged = temporal_merge(centre, (centre + 0.01).unsqueeze(0), sigma=20 / 255, valid=valid)
    assert torch.count_nonzero(merged.weights[..., 4:]) == 0
    assert torch.equal(merged.frame[..., 4:], centre[..., 4:])
    assert not torch.equal(merged.frame[..., :4], centre[..., :4])


def test_merge_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"centre must be \(3, H, W\) and warped \(N, 3, H, W\)"):
        temporal_merge(torch.rand(3, 8, 8), torch.rand(2, 3, 8, 9), sigma=0.1)


# --- Denoising ---------------------------------------------------------------------------------


def test_denoising_a_moving_texture_gains_over_the_noisy_and_the_single_frame_filter():
    clean = moving_clip(5, 96, 128)
    noisy = add_gaussian_noise(clean, 20, seed=0)
    truth = clean[2]
    noisy_psnr = quality(noisy[2], truth)["PSNR"]
    single = quality(denoise(noisy, 2, sigma=20, temporal=False), truth)["PSNR"]
    ours = quality(denoise(noisy, 2, sigma=20), truth)["PSNR"]
    assert single > noisy_psnr + 4.0
    assert ours > single + 1.0


def test_unusable_neighbours_leave_the_single_frame_filter():
    # Neighbours that show nothing of the centre (a cut, a flash): the merge gives them no
    # weight, and the result is the single-frame filter's (which is better than the input).
    clean = moving_clip(3, 64, 80)
    noisy = add_gaussian_noise(clean, 20, seed=1)
    strangers = (noisy[[0, 2]] + 0.5).remainder(1.0)  # every value half the range away
    window = torch.stack((strangers[0], noisy[1], strangers[1]))
    single = denoise(noisy, 1, sigma=20, temporal=False)
    torch.testing.assert_close(denoise(window, 1, sigma=20), single)
    assert quality(single, clean[1])["PSNR"] > quality(noisy[1], clean[1])["PSNR"]


@pytest.mark.parametrize("sigma", [10.0, 25.0])
def test_noise_level_is_estimated_from_the_frame(sigma):
    noisy = add_gaussian_noise(texture(128, 160, seed=3), sigma, seed=4)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.12)


def test_dct_denoise_leaves_a_clean_picture_almost_unchanged():
    clean = texture(48, 64)
    assert quality(dct_denoise(clean, 0.5 / 255), clean)["PSNR"] > 45


def test_denoise_with_the_estimated_level_is_close_to_the_given_one():
    clean = moving_clip(3, 64, 96, seed=2)
    noisy = add_gaussian_noise(clean, 20, seed=3)
    given = quality(denoise(noisy, 1, sigma=20), clean[1])["PSNR"]
    estimated = quality(denoise(noisy, 1), clean[1])["PSNR"]
    assert abs(given - estimated) < 0.5


# --- Super-resolution and deblocking -------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_super_resolution_beats_bicubic_upsampling(scale):
    clean = moving_clip(3, 96, 128, seed=4)
    low = bicubic_downscale(clean, scale)
    assert low.shape == (3, 3, 96 // scale, 128 // scale)
    bicubic = quality(enhancement.bicubic_upsample(low[1], scale), clean[1])["PSNR"]
    for temporal in (False, True):
        ours = super_resolve(low, 1, scale, temporal=temporal)
        assert ours.shape == (3, 96, 128)
        assert quality(ours, clean[1])["PSNR"] > bicubic + 0.1


def photo_clip(times, scale):
    """The photograph of helpers.frame_at at each time (a rotation, zoom and translation: every
    pixel moves differently, by fractions of a pixel), clean (T, 3, 96, 128) and downscaled."""
    from helpers import frame_at, to_tensor

    clean = torch.cat([to_tensor(frame_at(t)) for t in times])
    return clean, bicubic_downscale(clean, scale)


@pytest.mark.parametrize("scale", [2, 4])
def test_multi_frame_super_resolution_beats_the_single_frame_under_sub_pixel_motion(scale):
    # Between neighbouring frames the scene moves by 0 to 1.2 pixels of the output grid (about a
    # point near the top of the frame). Measured: 0.54 dB gained at x2, 0.24 dB at x4.
    clean, low = photo_clip((-0.12, 0.0, 0.12), scale)
    single = quality(super_resolve(low, 1, scale, temporal=False), clean[1])["PSNR"]
    fused = quality(super_resolve(low, 1, scale), clean[1])["PSNR"]
    assert fused > single + 0.15


def test_multi_frame_super_resolution_ignores_neighbours_that_show_something_else():
    from helpers import other_shot, to_tensor

    clean, low = photo_clip((0.0,), 2)
    strangers = bicubic_downscale(torch.cat([to_tensor(other_shot(96, 128)), 1.0 - clean]), 2)
    window = torch.cat((strangers[:1], low, strangers[1:]))
    for iterations in (4, 8):
        fused = super_resolve(window, 1, 2, iterations=iterations)
        assert torch.equal(fused, super_resolve(window, 1, 2, temporal=False, iterations=iterations))
    default = quality(super_resolve(window, 1, 2), clean[0])["PSNR"]
    assert default >= quality(super_resolve(window, 1, 2, temporal=False), clean[0])["PSNR"] - 0.01


def test_deblocking_returns_the_frame_size_and_does_not_degrade():
    clean = moving_clip(3, 64, 96, seed=5)
    compressed = h264_compress(clean, 40)
    ours = enhance(compressed, 1, "deblock")
    assert ours.shape == (3, 64, 96)
    assert quality(ours, clean[1])["PSNR"] >= quality(compressed[1], clean[1])["PSNR"] - 0.05


@pytest.mark.parametrize("height, width", [(1, 1), (5, 9), (17, 13)])
def test_every_task_takes_any_frame_size(height, width):
    frames = torch.rand(3, 3, height, width, generator=torch.Generator().manual_seed(0))
    assert enhance(frames, 1, "denoise", sigma=20).shape == (3, height, width)
    assert enhance(frames, 1, "deblock").shape == (3, height, width)
    assert enhance(frames, 1, "sr", scale=2).shape == (3, 2 * height, 2 * width)


# --- Degradations --------------------------------------------------------------------------------


def test_gaussian_noise_is_reproducible_from_the_seed():
    clean = texture(32, 40).expand(3, -1, -1, -1)
    first, again, other = (add_gaussian_noise(clean, 20, seed) for seed in (7, 7, 8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(first, (first * 255).round() / 255)  # 8-bit levels
    inner = (clean > 0.3) & (clean < 0.7)  # away from clipping
    assert float((first - clean)[inner].std() * 255) == pytest.approx(20, rel=0.1)


def test_h264_is_reproducible_and_coarser_at_a_higher_qp():
    clean = moving_clip(4, 48, 66, seed=6)
    low_qp, again = h264_compress(clean, 20), h264_compress(clean, 20)
    high_qp = h264_compress(clean, 45)
    assert torch.equal(low_qp, again)
    assert low_qp.shape == clean.shape
    assert quality(low_qp[1], clean[1])["PSNR"] > quality(high_qp[1], clean[1])["PSNR"] + 3


def test_h264_odd_sizes_are_padded_and_cropped_back():
    clean = moving_clip(2, 31, 45)
    assert h264_compress(clean, 30).shape == (2, 3, 31, 45)


def test_a_failing_ffmpeg_is_an_error_with_its_exit_status(monkeypatch):
    monkeypatch.setattr(enhancement, "ffmpeg_exe", lambda: "false")
    with pytest.raises(RuntimeError, match=r"FFmpeg failed to encode H.264 at QP 30 \(exit status 1\)"):
        h264_compress(torch.rand(2, 3, 16, 16), 30)


def test_degrade_dispatches_on_the_task():
    clean = moving_clip(3, 32, 48)
    assert torch.equal(degrade(clean, "denoise", seed=3, sigma=10), add_gaussian_noise(clean, 10, 3))
    assert degrade(clean, "sr", scale=2).shape == (3, 3, 16, 24)
    assert degrade(clean, "deblock", qp=30).shape == clean.shape


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: enhance(torch.rand(3, 3, 16, 16), task="blur"), ValueError, "task must be one of denoise, deblock, sr"),
        (lambda: enhance(torch.rand(3, 3, 16, 16), task="sr"), ValueError, "the sr task needs a scale: 2 or 4"),
        (lambda: enhance(torch.rand(3, 3, 16, 16), task="sr", scale=3), ValueError, "scale must be 2 or 4"),
        (lambda: super_resolve(torch.rand(3, 3, 16, 16), scale=2, iterations=-1), ValueError, "iterations must be an integer >= 0"),
        (lambda: super_resolve(torch.rand(3, 3, 16, 16), scale=2, iterations=2.5), ValueError, "iterations must be an integer >= 0"),
        (lambda: enhance(torch.rand(3, 3, 16, 16), task="deblock", sigma=20), ValueError, "sigma applies to the denoise task only"),
        (lambda: enhance(torch.rand(2, 3, 16, 16)), ValueError, "2 to 6 neighbours"),
        (lambda: enhance(torch.rand(8, 3, 16, 16)), ValueError, "2 to 6 neighbours"),
        (lambda: enhance(torch.rand(3, 3, 16, 16), 3), ValueError, "centre must index one of the 3 frames"),
        (lambda: enhance(torch.rand(3, 1, 16, 16)), ValueError, r"frames must have shape \(T, 3, H, W\)"),
        (lambda: enhance(torch.rand(3, 3, 16, 16), sigma=-1), ValueError, "sigma must be a number from 0 to 255"),
        (lambda: h264_compress(torch.rand(2, 3, 16, 16), 60), ValueError, "qp must be an integer from 0 to 51"),
        (lambda: add_gaussian_noise(torch.rand(3, 8, 8), 20, seed="0"), TypeError, "seed must be an integer"),
        (lambda: bicubic_downscale(torch.rand(3, 3, 3), 4), ValueError, "at least 4 x 4 pixels"),
    ],
)
def test_bad_input_is_refused_with_a_message(call, error, message):
    with pytest.raises(error, match=message):
        call()
