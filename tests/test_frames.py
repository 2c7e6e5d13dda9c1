"""Frame conversions and checks (memc_models.frames)."""

import numpy as np
import pytest
import torch

from memc_models.errors import UserError
from memc_models.frames import check_finite, check_same_size, from_pixels, to_uint8, to_uint16


def test_pixels_round_trip_exactly_at_8_and_16_bits():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    frame = from_pixels(pixels)
    assert frame.shape == (1, 3, 5, 7) and frame.dtype == torch.float32
    assert np.array_equal(to_uint8(frame), pixels) and np.array_equal(to_uint8(frame[0]), pixels)
    deep = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    assert np.array_equal(to_uint16(from_pixels(deep)), deep)


def test_values_outside_0_1_are_clamped_and_other_shapes_refused():
    assert to_uint8(torch.tensor([-1.0, 0.5, 2.0]).view(1, 3, 1, 1)).tolist() == [[[0, 128, 255]]]
    with pytest.raises(ValueError, match=r"expected one frame of shape \(1, 3, H, W\) or \(3, H, W\); got \(2, 3, 4, 4\)"):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_frames_of_two_sizes_are_named():
    with pytest.raises(UserError, match="the frames differ in size: b.png is 4x2, a.png is 4x3"):
        check_same_size(torch.zeros(1, 3, 2, 4), "b.png", torch.zeros(1, 3, 3, 4), "a.png")


def test_a_frame_that_is_not_finite_names_what_made_it():
    frame = torch.zeros(1, 3, 2, 2)
    assert check_finite(frame, "x") is frame
    frame[0, 1, 1, 1] = float("nan")
    with pytest.raises(UserError, match=r"--checkpoint w.pt produced a frame that is not finite \(NaN or inf\)"):
        check_finite(frame, "--checkpoint w.pt")
