"""Interpolation quality metrics (memc_models.metrics) against their definitions."""

import math

import numpy as np
import pytest
import torch

from helpers import frame_at, to_tensor
from memc_models.metrics import interpolation_error, metrics, psnr, rmse, ssim


def _levels(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64) / 255.0


def test_interpolation_error_is_mean_absolute_difference_of_8_bit_values():
    truth = torch.zeros(1, 3, 4, 5, dtype=torch.float64)
    output = truth.clone()
    output[:, 0] = 6 / 255  # one channel off by 6 levels everywhere: IE 2
    assert interpolation_error(output, truth) == pytest.approx(2.0)
    # The output is rounded to 8 bits first: 0.4 of a level counts as nothing.
    assert interpolation_error(truth + 0.4 / 255, truth) == 0.0


def test_rmse_is_middleburys_colour_difference_length():
    truth = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    output = truth.clone()
    output[:, :, 0, 0] = _levels([3.0, 4.0, 12.0])  # |RGB difference| = 13 at one pixel of four
    assert rmse(output, truth) == pytest.approx(math.sqrt(13**2 / 4))


def test_psnr():
    truth = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    assert psnr(truth + 10 / 255, truth) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(truth, truth) == math.inf


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    first = frame_at(0.0, 40, 56)
    noisy = np.clip(first.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, first.shape), 0, 255).astype(np.uint8)
    expected = metrics.structural_similarity(
        noisy, first, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(to_tensor(noisy), to_tensor(first)) == pytest.approx(expected, abs=1e-9)
    assert ssim(to_tensor(first), to_tensor(first)) == pytest.approx(1.0)


def test_ssim_is_not_defined_for_frames_smaller_than_its_window():
    frame = to_tensor(frame_at(0.0, 10, 40))
    with pytest.raises(ValueError) as error:
        ssim(frame, frame)
    assert str(error.value) == "ssim: frames of height 10 and width 40 are smaller than SSIM's 11 x 11 window"
    assert math.isnan(metrics(frame, frame)["SSIM"]) and metrics(frame, frame)["PSNR"] == math.inf
    # 11 x 11 is one window: defined.
    assert ssim(to_tensor(frame_at(0.0, 11, 11)), to_tensor(frame_at(0.0, 11, 11))) == pytest.approx(1.0)
