"""The enhancement evaluation (memc_models.enhancement_eval): clips and their windows, the peers,
and the scores, on small frames made here."""

import math

import pytest
import torch

from helpers import frame_at, iio, to_tensor
from memc_models import enhancement
from memc_models.enhancement_eval import (Method, Window, clip_windows, evaluate_enhancement, folder_clips, frames_clip,
                                          nlm_denoise, reference_methods, window_centres)
from memc_models.errors import UserError


@pytest.mark.parametrize("count, limit, half, centres", [
    (3, None, 1, [1]),               # a Middlebury sequence: its middle frame from the other two
    (4, None, 1, [1, 2]),
    (6, None, 2, [2, 3]),
    (9, None, 3, [3, 4, 5]),
    (79, 6, 3, [3, 17, 32, 46, 61, 75]),  # spread evenly, the first and last full windows included
    (9, 10, 3, [3, 4, 5]),
])
def test_window_centres_have_as_many_neighbours_on_both_sides(count, limit, half, centres):
    assert window_centres(count, limit) == (half, centres)


def _texture_clip(count, height=20, width=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(3, height + 2 * count, width + 2 * count, generator=generator)[None],
                                          3, 1, 1)[0]
    return [base[:, t : t + height, 2 * t : 2 * t + width] for t in range(count)]


def test_clip_windows_hold_the_frames_around_each_centre():
    frames = _texture_clip(8)
    windows = list(clip_windows([frames_clip("clip", frames)]))
    assert [window.name for window in windows] == ["clip@3", "clip@4"]
    for window, centre in zip(windows, (3, 4)):
        assert window.centre == 3
        assert torch.equal(window.frames, torch.stack(frames[centre - 3 : centre + 4]))


def test_a_clip_whose_frames_differ_in_size_is_named_and_skipped():
    frames = _texture_clip(3) + [torch.zeros(3, 8, 8)]
    unusable = []
    clips = [frames_clip("odd", frames), frames_clip("fine", _texture_clip(3))]
    assert [window.name for window in clip_windows(clips, unusable=unusable)] == ["odd@1", "fine"]
    assert unusable == ["odd: frame 3 is (8, 8), frame 1 (20, 24); the frames differ in size"]
    with pytest.raises(UserError, match="^odd: frame 3 is"):
        list(clip_windows(clips))


def test_folder_clips_take_the_folder_itself_or_each_folder_in_it(tmp_path):
    for name, count in (("Seq", 3), ("Pair", 2)):
        (tmp_path / name).mkdir()
        for k in range(count):
            iio.imwrite(tmp_path / name / f"frame{k}.png", frame_at(k / 4, 16, 16))
    (tmp_path / "empty").mkdir()  # no frames: not a clip, not worth a word
    clips, unusable = folder_clips(str(tmp_path))
    assert [(clip.name, clip.count) for clip in clips] == [("Seq", 3)]
    assert unusable == ["Pair: holds 2 frame(s); a window needs at least 3"]
    assert clips[0].read(1).shape == (3, 16, 16)
    clips, unusable = folder_clips(str(tmp_path / "Seq"))
    assert [(clip.name, clip.count) for clip in clips] == [("Seq", 3)] and unusable == []
    with pytest.raises(UserError, match="no such folder"):
        folder_clips(str(tmp_path / "absent"))


def test_the_same_seed_gives_the_same_scores_and_each_window_its_own_noise():
    frames = _texture_clip(3)
    windows = [Window("a", torch.stack(frames), 1), Window("b", torch.stack(frames), 1)]
    seen = []
    methods = [Method("input", lambda degraded, c: seen.append(degraded[c].clone()) or degraded[c])]
    first = evaluate_enhancement(windows, "denoise", methods, seed=3, sigma=10)
    assert not torch.equal(seen[0], seen[1])  # window k has the seed 3 + k
    again = evaluate_enhancement(windows, "denoise", methods, seed=3, sigma=10)
    assert (again[0].psnr, again[0].ssim) == (first[0].psnr, first[0].ssim)
    assert 25 < first[0].psnr < 30  # sigma 10: about 28 dB


def test_sr_is_scored_on_the_frame_cropped_to_the_low_resolution_grid():
    frames = torch.stack(_texture_clip(3, 21, 26))
    scores = evaluate_enhancement([Window("odd", frames, 1)], "sr", reference_methods("sr", scale=4), scale=4)
    assert [score.method for score in scores] == ["bicubic"]
    assert math.isfinite(scores[0].psnr) and not math.isnan(scores[0].ssim)


def test_nlm_denoises_the_centre_on_one_frame_and_on_the_window():
    clean = torch.cat([to_tensor(frame_at(k / 4, 48, 64)) for k in range(3)])
    noisy = enhancement.add_gaussian_noise(clean, 20, seed=0)
    before = enhancement.quality(noisy[1], clean[1])["PSNR"]
    for multi in (False, True):
        assert enhancement.quality(nlm_denoise(noisy, 1, 12.0, multi), clean[1])["PSNR"] > before + 2


def test_methods_must_have_different_names_and_no_window_gives_no_score():
    method = Method("same", lambda degraded, c: degraded[c])
    with pytest.raises(ValueError, match="the methods' names must differ"):
        evaluate_enhancement([], "denoise", [method, method])
    assert evaluate_enhancement([], "denoise", [method]) == []
