"""memc-interpolate and the training-free path, end to end on small frames made here: a real
photograph (scikit-image's sample data) moved by a known smooth motion, so the true intermediate
frames are known."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from memc_models import interpolate as interpolate_module
from memc_models.classical import ClassicalConfig, ClassicalInterpolator, bicubic_kernel
from memc_models.evaluate import interpolation_error
from memc_models.interpolate import main
from memc_models.io import UserError, read_image, to_uint8, write_image

import memc_ops

cv2 = pytest.importorskip("cv2")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
iio = pytest.importorskip("imageio.v3")

HEIGHT, WIDTH = 96, 128


def _photo() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()  # 512 x 512 RGB


def _frame_at(t: float, height: int = HEIGHT, width: int = WIDTH, speed: float = 1.0) -> np.ndarray:
    """The photograph at time t under a smooth motion: a rotation about a point off the frame, a
    zoom and a translation growing linearly with t (every pixel moves differently, up to ~8 px
    between t = 0 and 1)."""
    photo = _photo()
    angle, zoom, shift = 3.0 * t * speed, 1.0 + 0.04 * t * speed, (7.0 * t * speed, -4.0 * t * speed)
    matrix = cv2.getRotationMatrix2D((180.0, 140.0), angle, zoom)
    matrix[:, 2] += shift
    # Sample the middle of the photograph at a quarter of its size (anti-aliased first).
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    moved = cv2.warpAffine(small, matrix, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    top, left = (256 - height) // 2, (256 - width) // 2
    return moved[top : top + height, left : left + width]


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def test_default_path_beats_frame_averaging():
    first, middle, second = (_tensor(_frame_at(t)) for t in (0.0, 0.5, 1.0))
    ours = ClassicalInterpolator()(first, second, 0.5)
    ours_ie = interpolation_error(ours, middle)
    average_ie = interpolation_error(0.5 * (first + second), middle)
    assert ours.shape == first.shape
    assert ours_ie < 0.5 * average_ie, (ours_ie, average_ie)


def test_several_times_are_each_close_to_their_truth():
    first, second = _tensor(_frame_at(0.0)), _tensor(_frame_at(1.0))
    times = [0.25, 0.75]
    outputs = ClassicalInterpolator().interpolate(first, second, times)
    for t, output in zip(times, outputs):
        truth = _tensor(_frame_at(t))
        blend = (1 - t) * first + t * second
        assert interpolation_error(output, truth) < 0.6 * interpolation_error(blend, truth), t


def test_default_path_runs_on_device(device):
    first, second = _tensor(_frame_at(0.0)).to(device), _tensor(_frame_at(1.0)).to(device)
    cpu = ClassicalInterpolator()(first.cpu(), second.cpu(), 0.5)
    ours = ClassicalInterpolator()(first, second, 0.5)
    assert ours.device == first.device
    torch.testing.assert_close(ours.cpu(), cpu, atol=2e-3, rtol=0)


def test_self_ensemble_is_mirror_symmetric():
    # The four orientations form a group under mirroring: interpolating mirrored frames gives the
    # mirrored frame, whatever DIS does on each orientation.
    first, second = _tensor(_frame_at(0.0)), _tensor(_frame_at(1.0))
    ours = ClassicalInterpolator()(first, second, 0.5)
    for dims in ((3,), (2,), (2, 3)):
        mirrored = ClassicalInterpolator()(first.flip(dims), second.flip(dims), 0.5)
        torch.testing.assert_close(mirrored.flip(dims), ours, atol=1e-6, rtol=0)


def test_self_ensemble_is_a_per_pixel_blend_of_the_orientations():
    first, second = _tensor(_frame_at(0.0)), _tensor(_frame_at(1.0))
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


def _keys(x: float) -> float:
    x = abs(x)
    return 1.5 * x**3 - 2.5 * x**2 + 1 if x <= 1 else -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2 if x < 2 else 0.0


def test_bicubic_kernel_reproduces_bicubic_interpolation():
    # A whole-image subpixel shift through adaptive_warp with the bicubic kernel equals Keys'
    # cubic convolution (a = -0.5), written out here as a sum of shifted copies, inside the frame.
    image = _tensor(_frame_at(0.0)).double()
    dx, dy = 0.3, -0.6
    flow = torch.zeros(1, 2, HEIGHT, WIDTH, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = dx, dy
    warped = memc_ops.adaptive_warp(image, flow, bicubic_kernel(flow))
    # Targets x + 0.3 -> column x, fraction 0.3; y - 0.6 -> row y - 1, fraction 0.4.
    a, b, first_col, first_row = 0.3, 0.4, -1, -2
    col_weights = [_keys(1 + a), _keys(a), _keys(1 - a), _keys(2 - a)]
    row_weights = [_keys(1 + b), _keys(b), _keys(1 - b), _keys(2 - b)]
    margin = 4
    inner = (slice(None), slice(None), slice(margin, HEIGHT - margin), slice(margin, WIDTH - margin))
    expected = torch.zeros_like(image[inner])
    for r, wy in enumerate(row_weights):
        for c, wx in enumerate(col_weights):
            rows = slice(margin + first_row + r, HEIGHT - margin + first_row + r)
            cols = slice(margin + first_col + c, WIDTH - margin + first_col + c)
            expected += wy * wx * image[:, :, rows, cols]
    torch.testing.assert_close(warped[inner], expected, atol=1e-9, rtol=0)


def _write_images(tmp_path, *frames):
    paths = []
    for k, frame in enumerate(frames):
        path = tmp_path / f"frame{k}.png"
        iio.imwrite(path, frame)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("speed", [[], ["--fast"]])
def test_cli_writes_the_middle_frame(tmp_path, speed):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0))
    out = tmp_path / "out" / "mid.png"
    assert main([a, b, "-o", str(out), "--device", "cpu", "-q", *speed]) == 0
    written = iio.imread(out)
    assert written.shape == (HEIGHT, WIDTH, 3) and written.dtype == np.uint8
    truth = _tensor(_frame_at(0.5))
    average = 0.5 * (_tensor(_frame_at(0.0)) + _tensor(_frame_at(1.0)))
    assert interpolation_error(_tensor(written), truth) < 0.5 * interpolation_error(average, truth)


def test_cli_writes_one_file_per_time(tmp_path):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--factor", "4", "-q"]) == 0
    for t in ("0.250", "0.500", "0.750"):
        assert iio.imread(tmp_path / f"out_t{t}.png").shape == (HEIGHT, WIDTH, 3)


def _write_clip(path, count, height=48, width=64):
    codec = "libvpx-vp9" if str(path).endswith(".webm") else "libx264"
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=10, macro_block_size=1, codec=codec,
                                         pix_fmt_out="yuv444p", ffmpeg_log_level="error")
    writer.send(None)
    for k in range(count):
        writer.send(np.ascontiguousarray(_frame_at(k / 4, height, width)))
    writer.close()


def _video_info(path):
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    return meta, sum(1 for _ in frames)


@pytest.mark.parametrize("factor, size, container", [(2, (48, 64), "mp4"), (3, (47, 63), "mkv"), (2, (48, 64), "webm")])
def test_video_has_factor_times_the_frames(tmp_path, factor, size, container):
    clip, out = tmp_path / "clip.mp4", tmp_path / f"out.{container}"
    _write_clip(clip, 5, *size)
    assert main([str(clip), "-o", str(out), "--factor", str(factor), "-q", "--fast"]) == 0
    meta, count = _video_info(out)
    assert count == factor * (5 - 1) + 1
    assert tuple(meta["size"]) == (size[1], size[0])
    assert meta["fps"] == pytest.approx(10 * factor)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "memc_models.interpolate", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _assert_user_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_missing_file_is_an_error(tmp_path):
    a, = _write_images(tmp_path, _frame_at(0.0))
    _assert_user_error(_run_cli(a, tmp_path / "nope.png", "-o", tmp_path / "out.png"), "nope.png", "no such file")


def test_unreadable_image_is_an_error(tmp_path):
    a, = _write_images(tmp_path, _frame_at(0.0))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    _assert_user_error(_run_cli(a, bad, "-o", tmp_path / "out.png"), "bad.png", "cannot read")


def test_output_without_a_known_extension_is_an_error_before_any_work(tmp_path, capsys):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0))
    for output in ("out.xyz", "out"):
        assert main([a, b, "-o", str(tmp_path / output), "-q"]) != 0
        assert "an output image needs one of the extensions .png" in capsys.readouterr().err
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 3)
    assert main([str(clip), "-o", str(tmp_path / "out.gif"), "-q"]) != 0
    assert "an output video needs one of the extensions .mp4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frame0.png", "frame1.png"]


def test_frames_of_different_sizes_are_an_error(tmp_path, capsys):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0, 64, 80))
    assert main([a, b, "-o", str(tmp_path / "out.png")]) != 0
    assert "differ in size" in capsys.readouterr().err


def test_video_without_frames_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    writer = imageio_ffmpeg.write_frames(str(empty), (64, 48), fps=10, macro_block_size=1, ffmpeg_log_level="quiet")
    writer.send(None)
    writer.close()
    assert main([str(empty), "-o", str(tmp_path / "out.mp4")]) != 0
    err = capsys.readouterr().err
    assert "empty.mp4" in err and "error:" in err


@pytest.mark.parametrize("container", ["mkv", "webm"])
def test_video_cut_short_is_interpolated_with_a_note(tmp_path, capsys, container):
    # A partial download or copy: the header still announces the full length.
    whole = tmp_path / f"whole.{container}"
    _write_clip(whole, 40, 32, 48)
    cut = tmp_path / f"cut.{container}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decoded = _video_info(cut)[1]
    assert 2 <= decoded < 30
    out = tmp_path / f"out.{container}"
    assert main([str(cut), "-o", str(out), "--factor", "2", "--fast"]) == 0
    assert (f"note: {cut} announces 4 s at 10 fps (about 40 frames) but holds clearly fewer: the file looks cut "
            "short; interpolating the frames it holds") in capsys.readouterr().err
    assert _video_info(out)[1] == 2 * (decoded - 1) + 1
    # A whole file gets no such note.
    assert main([str(whole), "-o", str(tmp_path / f"whole_out.{container}"), "--factor", "2", "--fast"]) == 0
    assert "cut short" not in capsys.readouterr().err


def _ffmpeg(*arguments):
    """Runs the FFmpeg that imageio-ffmpeg ships (overwriting, quiet but for errors)."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, arguments)], check=True)


def _variable_rate_clip(tmp_path):
    """12 frames of the moving photograph, 8 at 10 fps and then one a second (announced as 10 fps,
    lasting 4.8 s)."""
    clip = tmp_path / "clip.mkv"
    _write_clip(clip, 12, 32, 48)
    variable = tmp_path / "variable.mkv"
    _ffmpeg("-i", clip, "-vf", "setpts='if(lt(N,8),N/10/TB,(1+(N-8))/TB)'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-pix_fmt", "yuv444p", variable)
    return variable


def test_intact_videos_get_no_cut_short_note(tmp_path, capsys):
    variable = _variable_rate_clip(tmp_path)
    # Audio running on for 3 s after 1.2 s of pictures: the container announces the longer one.
    long_audio = tmp_path / "long_audio.mp4"
    _ffmpeg("-i", tmp_path / "clip.mkv", "-f", "lavfi", "-i", "sine=d=3", "-c:v", "copy", "-c:a", "aac", long_audio)
    for video in (variable, long_audio):
        assert main([str(video), "-o", str(tmp_path / f"out_{video.name}"), "--fast"]) == 0
        assert "cut short" not in capsys.readouterr().err


def _clip_with_audio(tmp_path, frames=6):
    silent = tmp_path / "silent.mp4"
    _write_clip(silent, frames, 32, 48)
    clip = tmp_path / "with_audio.mp4"
    _ffmpeg("-i", silent, "-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / 10}", "-c:v", "copy",
            "-c:a", "aac", "-shortest", clip)
    return clip


@pytest.mark.parametrize("container", ["mp4", "mkv", "webm", "avi"])
def test_keep_audio_copies_the_inputs_audio_into_the_output(tmp_path, capsys, container):
    from memc_models.io import has_audio

    clip = _clip_with_audio(tmp_path)
    out = tmp_path / f"out.{container}"
    assert main([str(clip), "-o", str(out), "--factor", "3", "--fast", "--keep-audio"]) == 0
    err = capsys.readouterr().err
    assert "note:" not in err, err
    assert has_audio(str(out))
    # Frames as stored (read at a constant rate, an .avi is padded to its audio's length).
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 3 * 5 + 1
    assert _video_info(out)[0]["fps"] == pytest.approx(30)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["silent.mp4", "with_audio.mp4", out.name])


def test_audio_is_dropped_with_a_note_unless_kept(tmp_path, capsys):
    from memc_models.io import has_audio

    clip = _clip_with_audio(tmp_path)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "--fast"]) == 0
    assert f"note: {clip} has audio; the output has none (--keep-audio copies it)" in capsys.readouterr().err
    assert not has_audio(str(tmp_path / "out.mp4"))
    silent = tmp_path / "silent.mp4"
    assert main([str(silent), "-o", str(tmp_path / "out2.mp4"), "--fast", "--keep-audio"]) == 0
    assert f"note: {silent} has no audio to keep" in capsys.readouterr().err


def test_audio_that_cannot_be_added_leaves_the_video_with_a_note(tmp_path, capsys, monkeypatch):
    from memc_models import io

    clip = _clip_with_audio(tmp_path)
    monkeypatch.setattr(io, "_add_audio", lambda video, audio_from: "Unknown encoder 'no-such-encoder'")
    out = tmp_path / "out.mp4"
    assert main([str(clip), "-o", str(out), "--fast", "--keep-audio"]) == 0
    assert (f"note: could not add the audio of {clip} (Unknown encoder 'no-such-encoder'); the output has none"
            in capsys.readouterr().err)
    assert _video_info(out)[1] == 11


def test_add_audio_reencodes_what_the_container_cannot_hold_and_reports_failure(tmp_path):
    from memc_models import io

    clip = _clip_with_audio(tmp_path)  # AAC audio: WebM takes only Opus or Vorbis, so it is re-encoded
    video = tmp_path / "video.webm"
    assert main([str(clip), "-o", str(video), "--fast", "-q"]) == 0
    assert io._add_audio(str(video), str(clip)) is None and io.has_audio(str(video))
    before = video.read_bytes()
    not_media = tmp_path / "notes.txt"
    not_media.write_text("no audio here")
    assert io._add_audio(str(video), str(not_media))  # a reason, and the video as it was
    assert video.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "silent.mp4", "video.webm", "with_audio.mp4"]


def test_checkpoint_for_another_variant_is_an_error(tmp_path, capsys):
    import memc_models

    checkpoint = tmp_path / "memc_s.pth"
    torch.save(memc_models.memc_net_s().state_dict(), checkpoint)
    a, b = _write_images(tmp_path, _frame_at(0.0, 64, 64), _frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc"]) != 0
    err = capsys.readouterr().err
    assert "not a --model memc checkpoint" in err and "memc_s" in err
    # The right variant loads and runs.
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s", "-q"]) == 0
    assert iio.imread(tmp_path / "out.png").shape == (64, 64, 3)


def test_released_checkpoint_layout_loads_through_the_converter(tmp_path, capsys):
    import memc_models
    from memc_models.checkpoint import original_names

    model = memc_models.memc_net_s()
    names = original_names(model)
    released = {"module." + names[key]: value for key, value in model.state_dict().items() if key in names}
    checkpoint = tmp_path / "released_memc_s.pth"
    torch.save({"state_dict": released}, checkpoint)
    a, b = _write_images(tmp_path, _frame_at(0.0, 64, 64), _frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s", "-q"]) == 0
    assert iio.imread(tmp_path / "out.png").shape == (64, 64, 3)
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_star"]) != 0
    assert "it fits --model memc_s" in capsys.readouterr().err


def test_checkpoint_that_is_a_folder_is_an_error(tmp_path, capsys):
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main([a, b, "-o", str(tmp_path / "mid.png"), "--checkpoint", str(runs), "--model", "memc_s"]) == 1
    assert _error(capsys) == (f"--checkpoint {runs} is a folder; expected a checkpoint file "
                              "(such as best.pt or last.pt in it)")


def test_unreadable_checkpoint_is_an_error(tmp_path, capsys):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(bad)]) != 0
    assert "bad.pth" in capsys.readouterr().err


def test_bad_times_are_an_error(tmp_path, capsys):
    a, b = _write_images(tmp_path, _frame_at(0.0), _frame_at(1.0))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "1.5"]) != 0
    assert "--times" in capsys.readouterr().err
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "0.5", "0.25", "0.5"]) != 0
    assert "--times lists 0.5 more than once" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out_t0.500.png")


def test_each_time_gets_its_own_file(tmp_path):
    """One file per time, named to 3 decimals, or more where 3 would not tell two times apart."""
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "0.25", "0.75", "--fast", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out_t0.250.png", "out_t0.750.png"]
    assert main([a, b, "-o", str(tmp_path / "close.png"), "--times", "0.1231", "0.1234", "--fast", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.glob("close*")) == ["close_t0.1231.png", "close_t0.1234.png"]


# --- Folders of frames ---------------------------------------------------------------------------

def test_folder_of_frames_becomes_a_folder_of_factor_times_as_many(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    truth = [_frame_at(k / 6, 48, 64) for k in range(7)]  # every third one is an input
    for k in (0, 1, 2):  # named so that name order (f0, f10, f5) is not frame order (f0, f5, f10)
        iio.imwrite(frames / f"f{5 * k}.png", truth[3 * k])
    (frames / "notes.txt").write_text("not a frame")
    (frames / ".hidden.png").write_bytes(b"not a frame either")
    out = tmp_path / "out"
    assert main([str(frames), "-o", str(out), "--factor", "3", "--fast"]) == 0
    assert capsys.readouterr().err.rstrip().endswith(f"{out}: 7 frames from 3")
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"{k:05d}.png" for k in range(7)]
    for k, path in enumerate(written):
        pixels = iio.imread(path)
        if k % 3 == 0:
            np.testing.assert_array_equal(pixels, truth[k])  # the inputs, unchanged and in frame order
        else:
            ours = interpolation_error(_tensor(pixels), _tensor(truth[k]))
            average = interpolation_error(_tensor(truth[k - k % 3]) * 0.5 + _tensor(truth[k - k % 3 + 3]) * 0.5,
                                          _tensor(truth[k]))
            assert ours < 0.6 * average, (k, ours, average)


def test_folder_of_frames_keeps_the_inputs_format_and_factor_two_by_default(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        iio.imwrite(frames / f"{k}.jpg", _frame_at(k / 2, 32, 48))
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{k:05d}.jpg" for k in range(5)]
    # The input frames are copied as they are: encoding a JPEG again would lose detail.
    for k in range(3):
        assert (tmp_path / "out" / f"{2 * k:05d}.jpg").read_bytes() == (frames / f"{k}.jpg").read_bytes()


def test_folder_of_frames_writes_inputs_that_differ_from_what_it_writes(tmp_path):
    # Grey and EXIF-turned inputs are written as the RGB, upright frames around them, not copied.
    Image = _pil()
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(cv2.cvtColor(_frame_at(0.0, 32, 48), cv2.COLOR_RGB2GRAY)).save(frames / "0.png")
    image = Image.fromarray(np.ascontiguousarray(np.rot90(_frame_at(0.5, 32, 48), 1)))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(frames / "1.png", exif=exif)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    for k in (0, 2):
        written = Image.open(tmp_path / "out" / f"{k:05d}.png")
        assert written.mode == "RGB" and written.size == (48, 32) and 0x0112 not in written.getexif()


def test_list_frames_is_in_natural_order_of_image_files(tmp_path):
    from memc_models.io import list_frames

    for name in ("img10.png", "img9.png", "img100.PNG", "img9b.png", "img\u00b2.png", "readme.md", ".img1.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "img0.png").mkdir()
    assert [os.path.basename(p) for p in list_frames(str(tmp_path))] == ["img9.png", "img9b.png", "img10.png",
                                                                        "img100.PNG", "img\u00b2.png"]
    (tmp_path / "img11.jpg").write_bytes(b"")  # a second sequence, or the same saved twice, would interleave
    with pytest.raises(UserError) as error:
        list_frames(str(tmp_path))
    assert str(error.value) == f"{tmp_path}: holds images of several formats (.jpg, .png); keep one sequence of frames per folder"


@pytest.mark.parametrize("case", ["one frame", "output holds files", "output is the input", "output is a file",
                                  "sizes differ", "times"])
def test_folder_of_frames_errors_come_before_any_work(tmp_path, capsys, monkeypatch, case):
    _refuse_work(monkeypatch)
    frames = tmp_path / "frames"
    frames.mkdir()
    count = 1 if case == "one frame" else 3
    for k in range(count):
        iio.imwrite(frames / f"{k}.png", _frame_at(k / 2, 32, 48 if case != "sizes differ" or k < 2 else 40))
    out = tmp_path / "out"
    extra = []
    if case == "output holds files":
        out.mkdir()
        (out / "old.png").write_bytes(b"keep me")
    elif case == "output is the input":
        out = frames
    elif case == "output is a file":
        out = tmp_path / "out.mp4"
        out.write_bytes(b"keep me")
    elif case == "times":
        extra = ["--times", "0.5"]
    before = _listing(tmp_path)
    assert main([str(frames), "-o", str(out), *extra]) == 1
    expected = {
        "one frame": f"{frames}: holds 1 image(s); a folder of frames needs at least 2 "
                     "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp)",
        "output holds files": f"-o {out} already holds files; choose a new or empty folder",
        "output is the input": f"-o {out} is the input folder; choose another output folder",
        "output is a file": f"-o {out}: a folder of frames becomes a folder of frames; {out} is a file",
        "sizes differ": f"the frames differ in size: {frames / '2.png'} is 40x32, {frames / '0.png'} 48x32",
        "times": "--times applies to two images; for a folder of frames use --factor N",
    }[case]
    assert _error(capsys) == expected
    assert _listing(tmp_path) == before


def test_folder_run_that_fails_removes_what_it_wrote_and_can_run_again(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        iio.imwrite(frames / f"{k}.png", _frame_at(k / 4, 32, 48))
    good = (frames / "2.png").read_bytes()
    (frames / "2.png").write_bytes(good[: len(good) // 2])  # damaged: found only when read
    out = tmp_path / "out"
    assert main([str(frames), "-o", str(out), "--fast", "-q"]) == 1
    assert _error(capsys).startswith(f"cannot read {frames / '2.png'} as an image")
    assert not out.exists()
    (frames / "2.png").write_bytes(good)
    assert main([str(frames), "-o", str(out), "--fast", "-q"]) == 0
    assert len(list(out.iterdir())) == 7


def test_folder_of_frames_stored_on_their_side_runs(tmp_path):
    Image = _pil()
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        image = Image.fromarray(_frame_at(k / 4, 32, 48))
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(frames / f"{k}.jpg", exif=exif, quality=95)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    assert iio.imread(tmp_path / "out" / "00001.jpg").shape == (48, 32, 3)  # upright


def test_folder_mixing_sixteen_and_eight_bit_frames_gives_eight_bit_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    iio.imwrite(frames / "0.png", _frame_at(0.0))
    _write_sixteen_bit(frames / "1.png", _sixteen_bit_frame(0.5, 96, 128))
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    assert {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype for p in (tmp_path / "out").iterdir()} == {np.dtype(np.uint8)}


# --- Scene cuts ----------------------------------------------------------------------------------

def _other_shot(height=48, width=64) -> np.ndarray:
    """A frame of another shot: a different photograph."""
    skdata = pytest.importorskip("skimage.data")
    return cv2.resize(skdata.coffee(), (width, height), interpolation=cv2.INTER_AREA)


def test_colour_overlap_is_high_within_a_shot_and_low_across_a_cut():
    from memc_models.interpolate import SCENE_THRESHOLD, colour_overlap

    shot = [_tensor(_frame_at(t, 48, 64)) for t in (0.0, 0.5, 1.0)]
    other = _tensor(_other_shot())
    assert colour_overlap(shot[0], shot[0]) == pytest.approx(1.0)
    assert min(colour_overlap(a, b) for a, b in zip(shot, shot[1:])) > 0.9
    assert colour_overlap(shot[2], other) < SCENE_THRESHOLD
    assert colour_overlap(shot[2], other) == pytest.approx(colour_overlap(other, shot[2]))


def test_frames_across_a_scene_cut_repeat_the_nearest_input(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    inputs = [_frame_at(0.0, 48, 64), _frame_at(0.5, 48, 64), _other_shot(), _other_shot()]
    for k, pixels in enumerate(inputs):
        iio.imwrite(frames / f"{k}.png", pixels)
    out = tmp_path / "out"
    assert main([str(frames), "-o", str(out), "--factor", "3", "--fast"]) == 0
    assert ("note: 1 scene cut(s), before input frame(s) 2 (counted from 0): the frames there repeat the nearest "
            "input instead of blending two shots (--scene-threshold 0 interpolates anyway)") in capsys.readouterr().err
    written = [iio.imread(out / f"{k:05d}.png") for k in range(10)]
    np.testing.assert_array_equal(written[4], inputs[1])  # t = 1/3 after frame 1: frame 1 again
    np.testing.assert_array_equal(written[5], inputs[2])  # t = 2/3: the new shot's first frame
    assert not np.array_equal(written[1], inputs[0]) and not np.array_equal(written[1], inputs[1])  # within a shot
    # With detection off, the cut is interpolated like any pair.
    assert main([str(frames), "-o", str(tmp_path / "blended"), "--factor", "3", "--fast", "--scene-threshold", "0"]) == 0
    assert "scene cut" not in capsys.readouterr().err
    blended = iio.imread(tmp_path / "blended" / "00004.png")
    assert not np.array_equal(blended, inputs[1]) and not np.array_equal(blended, inputs[2])


def test_video_with_a_scene_cut_keeps_its_frame_count_and_says_so(tmp_path, capsys):
    clip = tmp_path / "cut.mp4"
    writer = imageio_ffmpeg.write_frames(str(clip), (64, 48), fps=10, macro_block_size=1, pix_fmt_out="yuv444p",
                                         ffmpeg_log_level="error")
    writer.send(None)
    for pixels in [_frame_at(0.0, 48, 64), _frame_at(0.25, 48, 64), _other_shot(), _other_shot()]:
        writer.send(np.ascontiguousarray(pixels))
    writer.close()
    out = tmp_path / "out.mp4"
    assert main([str(clip), "-o", str(out), "--factor", "2", "--fast"]) == 0
    assert "note: 1 scene cut(s), before input frame(s) 2 (counted from 0)" in capsys.readouterr().err
    assert _video_info(out)[1] == 7


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "much"])
def test_scene_threshold_outside_zero_to_one_is_an_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["a.mp4", "-o", str(tmp_path / "out.mp4"), "--scene-threshold", value])
    assert exit_.value.code == 2
    assert f"--scene-threshold: must be a number from 0 to 1; got {value}" in capsys.readouterr().err


# --- Sixteen-bit frames ---------------------------------------------------------------------------

def _write_sixteen_bit(path, pixels):
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels[..., ::-1]))


def _sixteen_bit_frame(t, height=48, width=64):
    """The moving photograph at time t with 16-bit samples (low bytes that 8 bits would lose)."""
    frame = cv2.resize(_frame_at(t, height // 2, width // 2), (width, height), interpolation=cv2.INTER_CUBIC)
    return (frame.astype(np.uint16) * 257 + np.uint16(123))


@pytest.mark.parametrize("extension", ["png", "tif"])
def test_sixteen_bit_images_give_sixteen_bit_frames(tmp_path, extension):
    a, b = tmp_path / f"a.{extension}", tmp_path / f"b.{extension}"
    _write_sixteen_bit(a, _sixteen_bit_frame(0.0))
    _write_sixteen_bit(b, _sixteen_bit_frame(1.0))
    out = tmp_path / f"mid.{extension}"
    assert main([str(a), str(b), "-o", str(out), "--fast", "-q"]) == 0
    pixels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint16 and pixels.shape == (48, 64, 3)
    assert np.any(pixels % 257 != 0)  # not 8-bit levels scaled up
    ours = read_image(str(out))
    expected = ClassicalInterpolator(ClassicalConfig(orientations=1))(read_image(str(a)), read_image(str(b)))
    # Half a 16-bit level, plus float32 rounding of a value that lies right on a half level.
    torch.testing.assert_close(ours, expected.clamp(0, 1), atol=0.5 / 65535 + 1e-7, rtol=0)
    # A format without 16-bit samples gets 8.
    assert main([str(a), str(b), "-o", str(tmp_path / "mid.jpg"), "--fast", "-q"]) == 0
    assert iio.imread(tmp_path / "mid.jpg").dtype == np.uint8


def test_sixteen_bit_folder_of_frames_gives_sixteen_bit_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    inputs = [_sixteen_bit_frame(k / 2) for k in range(3)]
    for k, pixels in enumerate(inputs):
        _write_sixteen_bit(frames / f"{k}.png", pixels)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    written = [cv2.imread(str(tmp_path / "out" / f"{k:05d}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] for k in range(5)]
    assert all(pixels.dtype == np.uint16 for pixels in written)
    for k in (0, 1, 2):
        np.testing.assert_array_equal(written[2 * k], inputs[k])


def test_write_image_sixteen_bits_round_trip_and_refusals(tmp_path):
    frame = torch.rand(1, 3, 8, 10)
    for extension in ("png", "tif"):
        write_image(str(tmp_path / f"deep.{extension}"), frame, bits=16)
        torch.testing.assert_close(read_image(str(tmp_path / f"deep.{extension}")), frame, atol=0.5 / 65535, rtol=0)
    with pytest.raises(ValueError, match="16-bit pixels need one of .png, .tif, .tiff"):
        write_image(str(tmp_path / "deep.jpg"), np.zeros((8, 10, 3), np.uint16))
    with pytest.raises(ValueError, match="bits must be 8 or 16; got 12"):
        write_image(str(tmp_path / "deep.png"), frame, bits=12)


# --- Inputs and outputs: what is read, what is refused, what is left on disk ----------------------

def _refuse_work(monkeypatch):
    """Makes loading an interpolator fail the test: an error must come before any work."""
    def no_work(*args, **kwargs):
        raise AssertionError("the interpolator was built before the error")
    monkeypatch.setattr(interpolate_module, "build_interpolator", no_work)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("memc-interpolate: error: ") and err.count("\n") == 1, err
    return err[len("memc-interpolate: error: "):].rstrip("\n")


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 3)
    link = tmp_path / "link.png"
    os.link(b, link)  # another name for the same file
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert main([a, b, "-o", a, "-q"]) == 1
    assert _error(capsys) == f"-o {a} is the input {a}; choose another output name"
    assert main([a, b, "-o", str(link), "-q"]) == 1
    assert _error(capsys) == f"-o {link} is the input {b}; choose another output name"
    assert main([str(clip), "-o", str(clip), "-q"]) == 1
    assert _error(capsys) == f"-o {clip} is the input {clip}; choose another output name"
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("output, inputs, extra, message", [
    ("a.png/x.png", "images", [], "{out}: cannot create the folder {tmp}/a.png ({tmp}/a.png is a file)"),
    ("a.png/sub/x.png", "images", ["--times", "0.3", "0.6"],
     "{tmp}/a.png/sub/x_t0.300.png: cannot create the folder {tmp}/a.png/sub ({tmp}/a.png is a file)"),
    ("a.png/x.mp4", "video", [], "{out}: cannot create the folder {tmp}/a.png ({tmp}/a.png is a file)"),
    ("folder.png", "images", [], "{out} is a directory; expected an output file name"),
    ("folder.mp4", "video", [], "{out} is a directory; expected an output file name"),
])
def test_unusable_output_is_an_error_before_any_work(tmp_path, capsys, monkeypatch, output, inputs, extra, message):
    _refuse_work(monkeypatch)
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    os.replace(a, tmp_path / "a.png")
    _write_clip(tmp_path / "clip.mp4", 3)
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.mp4").mkdir()
    before = _listing(tmp_path)
    sources = [str(tmp_path / "a.png"), b] if inputs == "images" else [str(tmp_path / "clip.mp4")]
    out = tmp_path / output
    assert main([*sources, "-o", str(out), "-q", *extra]) == 1
    assert _error(capsys) == message.format(out=out, tmp=tmp_path)
    assert _listing(tmp_path) == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no one can create files")
@pytest.mark.parametrize("output", ["/proc/memc_out.png", "/proc/memc_new/out.png", "/proc/memc_out.mp4"])
def test_output_folder_that_cannot_be_written_is_an_error_before_any_work(tmp_path, capsys, monkeypatch, output):
    _refuse_work(monkeypatch)
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 3)
    sources = [str(clip)] if output.endswith(".mp4") else [a, b]
    assert main([*sources, "-o", output, "-q"]) == 1
    assert _error(capsys).startswith(f"{output}: cannot write into the folder /proc (")


def test_failed_video_leaves_no_partial_file_and_the_old_output_untouched(tmp_path, capsys, monkeypatch):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    _write_clip(clip, 4)
    out.write_bytes(b"the previous output")
    calls = []

    def failing_interpolator(*args, **kwargs):
        def interpolate(frame0, frame1, times):
            calls.append(1)
            if len(calls) == 2:
                raise UserError("stopped in the middle")
            return [0.5 * (frame0 + frame1) for _ in times]
        return interpolate

    monkeypatch.setattr(interpolate_module, "build_interpolator", failing_interpolator)
    assert main([str(clip), "-o", str(out), "-q"]) == 1
    assert _error(capsys) == "stopped in the middle"
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]


def test_video_output_has_the_permissions_of_any_new_file(tmp_path):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    _write_clip(clip, 2)
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    assert main([str(clip), "-o", str(out), "-q", "--fast"]) == 0
    assert os.stat(out).st_mode == os.stat(ordinary).st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "ordinary", "out.mp4"]


@pytest.mark.parametrize("output", ["out.mp4", "out.png"])
def test_one_image_as_input_is_an_error(tmp_path, capsys, monkeypatch, output):
    _refuse_work(monkeypatch)
    a, = _write_images(tmp_path, _frame_at(0.0, 32, 32))
    assert main([a, "-o", str(tmp_path / output), "-q"]) == 1
    assert _error(capsys) == f"{a} is an image; pass two images, one video or one folder of frames"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame0.png"]


def test_one_frame_video_is_an_error_and_writes_nothing(tmp_path, capsys):
    # One frame has no neighbour to interpolate towards; writing it back would look like success.
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 1)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "-q", "--fast"]) == 1
    assert _error(capsys) == f"{clip}: the video has only 1 frame; there is nothing to interpolate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_input_that_is_a_directory_is_an_error(tmp_path, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    a, = _write_images(tmp_path, _frame_at(0.0, 32, 32))
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dir.mp4").mkdir()
    assert main([a, str(tmp_path / "dir.png"), "-o", str(tmp_path / "out.png")]) == 1
    assert _error(capsys) == f"{tmp_path / 'dir.png'} is a directory; expected an image file"
    assert main([str(tmp_path / "dir.mp4"), "-o", str(tmp_path / "out.mp4")]) == 1  # a folder of frames, empty
    assert _error(capsys) == (f"{tmp_path / 'dir.mp4'}: holds 0 image(s); a folder of frames needs at least 2 "
                              "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp)")
    with pytest.raises(UserError, match=f"^{tmp_path / 'dir.png'} is a directory; expected an image file$"):
        read_image(str(tmp_path / "dir.png"))


def _stop_before_work(monkeypatch):
    def stop(*args, **kwargs):
        raise UserError("stop")
    monkeypatch.setattr(interpolate_module, "build_interpolator", stop)


def test_options_that_do_nothing_get_a_note(tmp_path, capsys, monkeypatch):
    _stop_before_work(monkeypatch)
    a, b = _write_images(tmp_path, _frame_at(0.0, 32, 32), _frame_at(1.0, 32, 32))
    out = str(tmp_path / "out.png")
    main([a, b, "-o", out, "--model", "memc_s"])
    assert ("note: --model applies with --checkpoint; without one the training-free path runs\n"
            in capsys.readouterr().err)
    main([a, b, "-o", out, "--fast", "--checkpoint", str(tmp_path / "any.pth")])
    assert ("note: --fast applies to the training-free path; it does not change a --checkpoint model\n"
            in capsys.readouterr().err)
    main([a, b, "-o", out, "--half"])
    assert "note: --half applies to MEMC-Net models" in capsys.readouterr().err
    for quiet_or_useful in (["--model", "memc_s", "-q"], ["--checkpoint", "any.pth", "--model", "memc_s"], ["--fast"]):
        main([a, b, "-o", out, *quiet_or_useful])
        assert "note:" not in capsys.readouterr().err


def _pil():
    return pytest.importorskip("PIL.Image")


def test_read_image_converts_one_bit_grey_and_palette_images(tmp_path):
    Image = _pil()
    rgb = _frame_at(0.0, 32, 32)
    bits = rgb[..., 0] > 128
    Image.fromarray(bits).save(tmp_path / "bits.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "grey.png")
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "palette.png")
    expected_bits = torch.from_numpy(bits.astype(np.float32)).expand(1, 3, 32, 32)
    torch.testing.assert_close(read_image(str(tmp_path / "bits.png")), expected_bits, atol=0, rtol=0)
    grey = torch.from_numpy(rgb[..., 1].astype(np.float32) / 255).expand(1, 3, 32, 32)
    torch.testing.assert_close(read_image(str(tmp_path / "grey.png")), grey, atol=0, rtol=0)
    torch.testing.assert_close(read_image(str(tmp_path / "grey16.png")), grey, atol=1e-7, rtol=0)
    torch.testing.assert_close(read_image(str(tmp_path / "palette.png")), _tensor(np.asarray(palette.convert("RGB"))),
                               atol=0, rtol=0)


def test_read_image_gives_cmyk_jpeg_its_rgb_colours(tmp_path):
    Image = _pil()
    rgb = _frame_at(0.0, 32, 32)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    frame = read_image(str(tmp_path / "cmyk.jpg"))
    assert frame.shape == (1, 3, 32, 32) and frame.dtype == torch.float32
    assert (frame - _tensor(rgb)).abs().mean() < 0.02  # JPEG's loss only; CMYK read as RGB is ~0.5 off


@pytest.mark.parametrize("extension", ["jpg", "png"])
def test_read_image_turns_the_picture_upright_by_its_exif_orientation(tmp_path, extension):
    Image = _pil()
    rgb = _frame_at(0.0, 32, 48)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    path = tmp_path / f"phone.{extension}"
    image.save(path, exif=exif)
    stored = np.asarray(Image.open(path).convert("RGB"))  # the pixels as stored, on their side
    frame = read_image(str(path))
    assert frame.shape == (1, 3, 48, 32)
    torch.testing.assert_close(frame, _tensor(np.ascontiguousarray(np.rot90(stored, -1))), atol=0, rtol=0)


def _png_with_exif(png: bytes, exif: bytes) -> bytes:
    """A PNG file's bytes with an eXIf chunk (EXIF data starting at its byte-order mark) after IHDR."""
    import struct
    import zlib

    chunk = b"eXIf" + exif
    exif_chunk = struct.pack(">I", len(exif)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    return png[:end_of_header] + exif_chunk + png[end_of_header:]


@pytest.mark.parametrize("extension", ["png", "tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_read_image_keeps_all_sixteen_bits_of_colour(tmp_path, extension, channels):
    # Pillow alone would keep only the high byte of each sample.
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 65536, size=(24, 40, channels), dtype=np.uint16)
    path = tmp_path / f"deep.{extension}"
    assert cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3][:channels]])  # OpenCV stores BGR(A)
    frame = read_image(str(path))
    assert frame.shape == (1, 3, 24, 40) and frame.dtype == torch.float32
    expected = torch.from_numpy(rgba[..., :3].astype(np.float32) / 65535).permute(2, 0, 1).unsqueeze(0)
    torch.testing.assert_close(frame, expected, atol=0, rtol=0)


def test_read_image_turns_a_sixteen_bit_picture_upright_by_its_exif_orientation(tmp_path):
    Image = _pil()
    rgb = np.random.default_rng(1).integers(0, 65536, size=(24, 40, 3), dtype=np.uint16)
    stored = tmp_path / "stored.png"
    assert cv2.imwrite(str(stored), rgb[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    path.write_bytes(_png_with_exif(stored.read_bytes(), exif.tobytes()[len(b"Exif\0\0"):]))
    assert Image.open(path).getexif()[0x0112] == 6
    frame = read_image(str(path))
    upright = np.ascontiguousarray(np.rot90(rgb, -1))
    torch.testing.assert_close(frame[0].permute(1, 2, 0), torch.from_numpy(upright.astype(np.float32) / 65535),
                               atol=0, rtol=0)


@pytest.mark.parametrize("orientation", [1, 3, 6])
def test_read_image_turns_a_sixteen_bit_tiff_upright_by_its_orientation_tag(tmp_path, orientation):
    tifffile = pytest.importorskip("tifffile")
    rgb = np.random.default_rng(orientation).integers(0, 65536, size=(4, 7, 3), dtype=np.uint16)
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", extratags=[(0x0112, "H", 1, orientation, True)])
    upright = {1: rgb, 3: rgb[::-1, ::-1], 6: np.rot90(rgb, -1)}[orientation]
    frame = read_image(str(path))
    # Upright in every case; all 16 bits where OpenCV's decoder can be used (no orientation).
    tolerance = 0.5 / 65535 if orientation == 1 else 1 / 255
    torch.testing.assert_close(frame[0].permute(1, 2, 0), torch.from_numpy(upright.astype(np.float32) / 65535),
                               atol=tolerance, rtol=0)


def test_read_image_takes_big_endian_sixteen_bit_grey(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    grey = np.random.default_rng(0).integers(0, 65536, size=(5, 6), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey, byteorder=">")
    frame = read_image(str(tmp_path / "grey.tif"))
    expected = torch.from_numpy(grey.astype(np.float32) / 65535).expand(1, 3, 5, 6)
    torch.testing.assert_close(frame, expected, atol=0, rtol=0)


def test_read_image_refuses_sixteen_bit_tiff_with_separate_colour_planes(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    planes = np.random.default_rng(0).integers(0, 65536, size=(3, 5, 6), dtype=np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    with pytest.raises(UserError) as error:
        read_image(str(path))
    assert str(error.value) == (f"{path}: a 16-bit TIFF with separate colour planes is not supported; save it with "
                                "interleaved samples (PlanarConfiguration 1)")


def test_damaged_sixteen_bit_png_is_one_line_and_nothing_else(tmp_path, capfd):
    whole = tmp_path / "whole.png"
    assert cv2.imwrite(str(whole), np.random.default_rng(0).integers(0, 65536, size=(40, 50, 3), dtype=np.uint16))
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(UserError, match=f"^cannot read {damaged} as an image \\(.*\\)$"):
        read_image(str(damaged))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # no libpng or OpenCV messages


def test_sixteen_bits_are_told_from_pillow_tiles_of_every_version():
    from types import SimpleNamespace

    from memc_models.io import _stored_with_16_bits

    for tile in [("zip", (0, 0, 4, 4), 41, "RGB;16B"), ("zip", (0, 0, 4, 4), 41, ("RGB;16B", 0, 1))]:
        assert _stored_with_16_bits(SimpleNamespace(format="PNG", tile=[tile]))  # a plain tuple: Pillow < 11
    assert not _stored_with_16_bits(SimpleNamespace(format="PNG", tile=[("zip", (0, 0, 4, 4), 41, "RGB")]))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_pictures_are_turned_upright_as_pillow_turns_eight_bit_ones(tmp_path, orientation):
    from PIL import ImageOps

    from memc_models.io import _upright

    Image = _pil()
    rgb = np.random.default_rng(orientation).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "turned.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "turned.png")))
    np.testing.assert_array_equal(_upright(rgb, orientation), expected)


def test_read_image_takes_float_pixels_in_zero_to_one_only(tmp_path):
    rgb = _frame_at(0.0, 32, 32)
    iio.imwrite(tmp_path / "unit.tif", rgb.astype(np.float32) / 255)
    torch.testing.assert_close(read_image(str(tmp_path / "unit.tif")), _tensor(rgb), atol=1e-7, rtol=0)
    iio.imwrite(tmp_path / "bytes.tif", rgb.astype(np.float32))
    path = tmp_path / "bytes.tif"
    with pytest.raises(UserError) as error:
        read_image(str(path))
    assert str(error.value) == (f"{path}: floating-point pixels range over [{rgb.min()}, {rgb.max()}]; "
                                "expected values in [0, 1]")
    with_nan = rgb.astype(np.float32) / 255
    with_nan[0, 0, 0] = np.nan
    iio.imwrite(tmp_path / "nan.tif", with_nan)
    with pytest.raises(UserError, match="floating-point pixels range over .*; expected values in \\[0, 1\\]"):
        read_image(str(tmp_path / "nan.tif"))


def test_read_image_refuses_int32_pixels_with_what_to_do(tmp_path):
    Image = _pil()
    Image.fromarray(np.array([[0, 100], [23500, 7]], dtype=np.int32)).save(tmp_path / "wide.tif")
    path = tmp_path / "wide.tif"
    with pytest.raises(UserError) as error:
        read_image(str(path))
    assert str(error.value) == (f"{path}: int32 pixels (values 0..23500) have no standard scale; "
                                "save it with 8- or 16-bit integers, or floats in [0, 1]")


def test_read_image_refuses_several_frames(tmp_path):
    frames = np.stack([_frame_at(t, 32, 32) for t in (0.0, 0.5, 1.0)])
    iio.imwrite(tmp_path / "anim.gif", frames, extension=".gif")
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 5)
    for path, count in ((tmp_path / "anim.gif", 3), (clip, 5)):
        with pytest.raises(UserError) as error:
            read_image(str(path))
        assert str(error.value) == f"{path}: has {count} frames; pass still images (or one video)"


def test_read_image_names_a_file_it_cannot_read_in_one_line(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name in ("empty.png", "text.png"):
        path = tmp_path / name
        with pytest.raises(UserError) as error:
            read_image(str(path))
        assert str(error.value) == f"cannot read {path} as an image (unknown format or damaged file)"
    # A PNG cut short: Pillow knows the format but cannot decode it.
    iio.imwrite(tmp_path / "whole.png", _frame_at(0.0, 32, 32))
    cut = tmp_path / "cut.png"
    cut.write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    with pytest.raises(UserError) as error:
        read_image(str(cut))
    assert str(error.value).startswith(f"cannot read {cut} as an image (") and "\n" not in str(error.value)


def test_write_image_takes_exactly_one_frame(tmp_path):
    expected = r"expected one frame of shape \(1, 3, H, W\) or \(3, H, W\); got \(2, 3, 4, 4\)"
    with pytest.raises(ValueError, match=expected):
        write_image(str(tmp_path / "out.png"), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"got \(2, 3, 4, 4\)"):
        to_uint8(torch.zeros(2, 3, 4, 4))
    assert not (tmp_path / "out.png").exists()
    write_image(str(tmp_path / "new" / "out.png"), torch.ones(1, 3, 4, 4))
    assert (iio.imread(tmp_path / "new" / "out.png") == 255).all()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UserError) as error:
        write_image(str(tmp_path / "file" / "out.png"), torch.ones(1, 3, 4, 4))
    in_the_way = tmp_path / "file"
    assert str(error.value) == f"{in_the_way / 'out.png'}: cannot create the folder {in_the_way} (a file is in the way)"


@pytest.mark.parametrize("extension", [".jpg", ".webp"])
def test_lossy_outputs_keep_the_detail(tmp_path, extension):
    """JPEG (full colour resolution) and WebP frames are written at quality 95, not Pillow's
    default 75: on a detailed real photo the round trip errs clearly less."""
    photo = np.ascontiguousarray(_photo()[:128, :128])
    write_image(str(tmp_path / f"out{extension}"), photo)
    error = np.abs(iio.imread(tmp_path / f"out{extension}").astype(float) - photo).mean()
    default_quality = tmp_path / f"default{extension}"
    iio.imwrite(default_quality, photo)
    assert error < 0.75 * np.abs(iio.imread(default_quality).astype(float) - photo).mean()
    assert error < 2.0
