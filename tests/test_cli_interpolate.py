"""memc-interpolate (memc_models.cli.interpolate), end to end on small frames made here: a real
photograph (scikit-image's sample data) moved by a known smooth motion, so the true intermediate
frames are known; its errors, notes and what it leaves behind when a run fails."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import (HEIGHT, STOP_SIGNALS_AS_FROM_A_TERMINAL, WIDTH, clip_with_audio, cv2, ffmpeg, frame_at, full_disk,
                     iio, imageio_ffmpeg, listing, other_shot, pil, run_program, sixteen_bit_frame, start_slow_program,
                     to_tensor, variable_rate_clip, video_info, wait_until_interpolating, write_clip, write_images,
                     write_sixteen_bit)
from memc_models import video
from memc_models.classical import ClassicalConfig, ClassicalInterpolator
from memc_models.cli import interpolate as interpolate_module
from memc_models.cli.interpolate import main
from memc_models.errors import UserError
from memc_models.images import read_image
from memc_models.metrics import interpolation_error
from memc_models.video import has_audio


@pytest.mark.parametrize("speed", [[], ["--fast"]])
def test_cli_writes_the_middle_frame(tmp_path, speed):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0))
    out = tmp_path / "out" / "mid.png"
    assert main([a, b, "-o", str(out), "--device", "cpu", "-q", *speed]) == 0
    written = iio.imread(out)
    assert written.shape == (HEIGHT, WIDTH, 3) and written.dtype == np.uint8
    truth = to_tensor(frame_at(0.5))
    average = 0.5 * (to_tensor(frame_at(0.0)) + to_tensor(frame_at(1.0)))
    assert interpolation_error(to_tensor(written), truth) < 0.5 * interpolation_error(average, truth)


def test_cli_writes_one_file_per_time(tmp_path):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--factor", "4", "-q"]) == 0
    for t in ("0.250", "0.500", "0.750"):
        assert iio.imread(tmp_path / f"out_t{t}.png").shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("factor, size, container", [(2, (48, 64), "mp4"), (3, (47, 63), "mkv"), (2, (48, 64), "webm")])
def test_video_has_factor_times_the_frames(tmp_path, factor, size, container):
    clip, out = tmp_path / "clip.mp4", tmp_path / f"out.{container}"
    write_clip(clip, 5, *size)
    assert main([str(clip), "-o", str(out), "--factor", str(factor), "-q", "--fast"]) == 0
    meta, count = video_info(out)
    assert count == factor * (5 - 1) + 1
    assert tuple(meta["size"]) == (size[1], size[0])
    assert meta["fps"] == pytest.approx(10 * factor)


def _run_cli(*args):
    return run_program("memc_models.cli.interpolate", *args, timeout=120)


def _assert_user_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_missing_file_is_an_error(tmp_path):
    a, = write_images(tmp_path, frame_at(0.0))
    _assert_user_error(_run_cli(a, tmp_path / "nope.png", "-o", tmp_path / "out.png"), "nope.png", "no such file")


@pytest.mark.parametrize("output", ["out/", "out.mp4", "out.png"])
def test_a_missing_video_or_folder_is_named_whatever_the_output(tmp_path, capsys, monkeypatch, output):
    _refuse_work(monkeypatch)
    missing = tmp_path / "nofolder"
    assert main([str(missing), "-o", os.path.join(tmp_path, output), "-q"]) == 1  # keeps "out/"'s slash
    assert _error(capsys) == f"{missing}: no such file or folder"
    assert list(tmp_path.iterdir()) == []


def test_unreadable_image_is_an_error(tmp_path):
    a, = write_images(tmp_path, frame_at(0.0))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    _assert_user_error(_run_cli(a, bad, "-o", tmp_path / "out.png"), "bad.png", "cannot read")


def test_output_without_a_known_extension_is_an_error_before_any_work(tmp_path, capsys):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0))
    for output in ("out.xyz", "out"):
        assert main([a, b, "-o", str(tmp_path / output), "-q"]) != 0
        assert "an output image needs one of the extensions .png" in capsys.readouterr().err
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 3)
    assert main([str(clip), "-o", str(tmp_path / "out.gif"), "-q"]) != 0
    assert "an output video needs one of the extensions .mp4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frame0.png", "frame1.png"]


def test_frames_of_different_sizes_are_an_error(tmp_path, capsys):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0, 64, 80))
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
    write_clip(whole, 40, 32, 48)
    cut = tmp_path / f"cut.{container}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decoded = video_info(cut)[1]
    assert 2 <= decoded < 30
    out = tmp_path / f"out.{container}"
    assert main([str(cut), "-o", str(out), "--factor", "2", "--fast"]) == 0
    assert (f"note: {cut} announces 4 s at 10 fps (about 40 frames) but holds clearly fewer: the file looks cut "
            "short; interpolating the frames it holds") in capsys.readouterr().err
    assert video_info(out)[1] == 2 * (decoded - 1) + 1
    # A whole file gets no such note.
    assert main([str(whole), "-o", str(tmp_path / f"whole_out.{container}"), "--factor", "2", "--fast"]) == 0
    assert "cut short" not in capsys.readouterr().err


def test_intact_videos_get_no_cut_short_note(tmp_path, capsys):
    variable = variable_rate_clip(tmp_path)
    # Audio running on for 3 s after 1.2 s of pictures: the container announces the longer one.
    long_audio = tmp_path / "long_audio.mp4"
    ffmpeg("-i", tmp_path / "clip.mkv", "-f", "lavfi", "-i", "sine=d=3", "-c:v", "copy", "-c:a", "aac", long_audio)
    for video in (variable, long_audio):
        assert main([str(video), "-o", str(tmp_path / f"out_{video.name}"), "--fast"]) == 0
        assert "cut short" not in capsys.readouterr().err


@pytest.mark.parametrize("container", ["mp4", "mkv", "webm", "avi"])
def test_keep_audio_copies_the_inputs_audio_into_the_output(tmp_path, capsys, container):
    clip = clip_with_audio(tmp_path)
    out = tmp_path / f"out.{container}"
    assert main([str(clip), "-o", str(out), "--factor", "3", "--fast", "--keep-audio"]) == 0
    err = capsys.readouterr().err
    assert "note:" not in err, err
    assert has_audio(str(out))
    # Frames as stored (read at a constant rate, an .avi is padded to its audio's length).
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 3 * 5 + 1
    assert video_info(out)[0]["fps"] == pytest.approx(30)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["silent.mp4", "with_audio.mp4", out.name])


def test_audio_is_dropped_with_a_note_unless_kept(tmp_path, capsys):
    clip = clip_with_audio(tmp_path)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "--fast"]) == 0
    assert f"note: {clip} has audio; the output has none (--keep-audio copies it)" in capsys.readouterr().err
    assert not has_audio(str(tmp_path / "out.mp4"))
    silent = tmp_path / "silent.mp4"
    assert main([str(silent), "-o", str(tmp_path / "out2.mp4"), "--fast", "--keep-audio"]) == 0
    assert f"note: {silent} has no audio to keep" in capsys.readouterr().err


def test_audio_that_cannot_be_added_leaves_the_video_with_a_note(tmp_path, capsys, monkeypatch):
    clip = clip_with_audio(tmp_path)
    monkeypatch.setattr(video, "add_audio", lambda video, audio_from: "Unknown encoder 'no-such-encoder'")
    out = tmp_path / "out.mp4"
    assert main([str(clip), "-o", str(out), "--fast", "--keep-audio"]) == 0
    assert (f"note: could not add the audio of {clip} (Unknown encoder 'no-such-encoder'); the output has none"
            in capsys.readouterr().err)
    assert video_info(out)[1] == 11


def test_checkpoint_for_another_variant_is_an_error(tmp_path, capsys):
    import memc_models

    checkpoint = tmp_path / "memc_s.pth"
    torch.save(memc_models.memc_net_s().state_dict(), checkpoint)
    a, b = write_images(tmp_path, frame_at(0.0, 64, 64), frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc"]) != 0
    err = capsys.readouterr().err
    assert "not a --model memc checkpoint" in err and "memc_s" in err
    # The right variant loads and runs.
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s",
                 "-q"]) == 0
    assert iio.imread(tmp_path / "out.png").shape == (64, 64, 3)


def test_released_checkpoint_layout_loads_through_the_converter(tmp_path, capsys):
    import memc_models
    from memc_models.checkpoint import original_names

    model = memc_models.memc_net_s()
    names = original_names(model)
    released = {"module." + names[key]: value for key, value in model.state_dict().items() if key in names}
    checkpoint = tmp_path / "released_memc_s.pth"
    torch.save({"state_dict": released}, checkpoint)
    a, b = write_images(tmp_path, frame_at(0.0, 64, 64), frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s",
                 "-q"]) == 0
    assert iio.imread(tmp_path / "out.png").shape == (64, 64, 3)
    assert capsys.readouterr().err == ""  # -q: no notes
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_star"]) != 0
    assert "it fits --model memc_s" in capsys.readouterr().err


def test_a_released_checkpoint_says_in_one_line_that_it_runs_as_released(tmp_path, capsys):
    import memc_models
    from memc_models.checkpoint import original_names

    model = memc_models.memc_net_s()
    names = original_names(model)
    checkpoint = tmp_path / "MEMC-Net_s_best.pth"
    torch.save({names[key]: value for key, value in model.state_dict().items() if key in names}, checkpoint)
    a, b = write_images(tmp_path, frame_at(0.0, 64, 64), frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "release mode" in line]
    assert notes == [
        f"note: --checkpoint {checkpoint}: run in the authors' release mode: pads frames as the released evaluation "
        "script (to multiples of 128) and fills flow holes as the released kernel (never from below)"
    ]


def test_our_own_checkpoint_runs_without_a_release_note(tmp_path, capsys):
    import memc_models

    checkpoint = tmp_path / "best.pt"
    torch.save(memc_models.memc_net_s().state_dict(), checkpoint)
    a, b = write_images(tmp_path, frame_at(0.0, 64, 64), frame_at(1.0, 64, 64))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(checkpoint), "--model", "memc_s"]) == 0
    assert "release mode" not in capsys.readouterr().err


def test_checkpoint_that_is_a_folder_is_an_error(tmp_path, capsys):
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main([a, b, "-o", str(tmp_path / "mid.png"), "--checkpoint", str(runs), "--model", "memc_s"]) == 1
    assert _error(capsys) == (f"--checkpoint {runs} is a folder; expected a checkpoint file "
                              "(such as best.pt or last.pt in it)")


def test_unreadable_checkpoint_is_an_error(tmp_path, capsys):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--checkpoint", str(bad)]) != 0
    assert "bad.pth" in capsys.readouterr().err


def test_bad_times_are_an_error(tmp_path, capsys):
    a, b = write_images(tmp_path, frame_at(0.0), frame_at(1.0))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "1.5"]) != 0
    assert "--times" in capsys.readouterr().err
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "0.5", "0.25", "0.5"]) != 0
    assert "--times lists 0.5 more than once" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out_t0.500.png")


def test_each_time_gets_its_own_file(tmp_path):
    """One file per time, named to 3 decimals, or more where 3 would not tell two times apart."""
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--times", "0.25", "0.75", "--fast", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out_t0.250.png", "out_t0.750.png"]
    assert main([a, b, "-o", str(tmp_path / "close.png"), "--times", "0.1231", "0.1234", "--fast", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.glob("close*")) == ["close_t0.1231.png", "close_t0.1234.png"]


def test_folder_of_frames_becomes_a_folder_of_factor_times_as_many(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    truth = [frame_at(k / 6, 48, 64) for k in range(7)]  # every third one is an input
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
            ours = interpolation_error(to_tensor(pixels), to_tensor(truth[k]))
            average = interpolation_error(to_tensor(truth[k - k % 3]) * 0.5 + to_tensor(truth[k - k % 3 + 3]) * 0.5,
                                          to_tensor(truth[k]))
            assert ours < 0.6 * average, (k, ours, average)


def test_folder_of_frames_keeps_the_inputs_format_and_factor_two_by_default(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        iio.imwrite(frames / f"{k}.jpg", frame_at(k / 2, 32, 48))
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{k:05d}.jpg" for k in range(5)]
    # The input frames are copied as they are: encoding a JPEG again would lose detail.
    for k in range(3):
        assert (tmp_path / "out" / f"{2 * k:05d}.jpg").read_bytes() == (frames / f"{k}.jpg").read_bytes()


def test_folder_of_frames_writes_inputs_that_differ_from_what_it_writes(tmp_path):
    # Grey and EXIF-turned inputs are written as the RGB, upright frames around them, not copied.
    Image = pil()
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(cv2.cvtColor(frame_at(0.0, 32, 48), cv2.COLOR_RGB2GRAY)).save(frames / "0.png")
    image = Image.fromarray(np.ascontiguousarray(np.rot90(frame_at(0.5, 32, 48), 1)))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(frames / "1.png", exif=exif)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    for k in (0, 2):
        written = Image.open(tmp_path / "out" / f"{k:05d}.png")
        assert written.mode == "RGB" and written.size == (48, 32) and 0x0112 not in written.getexif()


@pytest.mark.parametrize("case", ["one frame", "output holds files", "output is the input", "output is a file",
                                  "output named like a video", "output named like an image", "sizes differ", "times"])
def test_folder_of_frames_errors_come_before_any_work(tmp_path, capsys, monkeypatch, case):
    _refuse_work(monkeypatch)
    frames = tmp_path / "frames"
    frames.mkdir()
    count = 1 if case == "one frame" else 3
    for k in range(count):
        iio.imwrite(frames / f"{k}.png", frame_at(k / 2, 32, 48 if case != "sizes differ" or k < 2 else 40))
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
    elif case == "output named like a video":  # it would be a folder of frames called e8.mp4
        out = tmp_path / "e8.mp4"
    elif case == "output named like an image":
        out = tmp_path / "e8.png"
    elif case == "times":
        extra = ["--times", "0.5"]
    before = listing(tmp_path)
    assert main([str(frames), "-o", str(out), *extra]) == 1
    expected = {
        "one frame": f"{frames}: holds 1 image(s); a folder of frames needs at least 2 "
                     "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp)",
        "output holds files": f"-o {out} already holds files; choose a new or empty folder",
        "output is the input": f"-o {out} is the input folder; choose another output folder",
        "output is a file": f"-o {out} is a file; expected a new or empty folder",
        "output named like a video": f"-o {out}: a folder of frames becomes a folder of frames, not a video; give a "
                                     "folder name without a video extension (.mp4)",
        "output named like an image": f"-o {out}: a folder of frames becomes a folder of frames, not an image; give a "
                                      "folder name without an image extension (.png)",
        "sizes differ": f"the frames differ in size: {frames / '2.png'} is 40x32, {frames / '0.png'} 48x32",
        "times": "--times applies to two images; for a folder of frames use --factor N",
    }[case]
    assert _error(capsys) == expected
    assert listing(tmp_path) == before


def test_folder_run_that_fails_removes_what_it_wrote_and_can_run_again(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        iio.imwrite(frames / f"{k}.png", frame_at(k / 4, 32, 48))
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
    Image = pil()
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        image = Image.fromarray(frame_at(k / 4, 32, 48))
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(frames / f"{k}.jpg", exif=exif, quality=95)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    assert iio.imread(tmp_path / "out" / "00001.jpg").shape == (48, 32, 3)  # upright


def test_folder_mixing_sixteen_and_eight_bit_frames_gives_eight_bit_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    iio.imwrite(frames / "0.png", frame_at(0.0))
    write_sixteen_bit(frames / "1.png", sixteen_bit_frame(0.5, 96, 128))
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    dtypes = {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype for p in (tmp_path / "out").iterdir()}
    assert dtypes == {np.dtype(np.uint8)}


def test_frames_across_a_scene_cut_repeat_the_nearest_input(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    inputs = [frame_at(0.0, 48, 64), frame_at(0.5, 48, 64), other_shot(), other_shot()]
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
    assert main([str(frames), "-o", str(tmp_path / "blended"), "--factor", "3", "--fast",
                 "--scene-threshold", "0"]) == 0
    assert "scene cut" not in capsys.readouterr().err
    blended = iio.imread(tmp_path / "blended" / "00004.png")
    assert not np.array_equal(blended, inputs[1]) and not np.array_equal(blended, inputs[2])


def test_video_with_a_scene_cut_keeps_its_frame_count_and_says_so(tmp_path, capsys):
    clip = tmp_path / "cut.mp4"
    writer = imageio_ffmpeg.write_frames(str(clip), (64, 48), fps=10, macro_block_size=1, pix_fmt_out="yuv444p",
                                         ffmpeg_log_level="error")
    writer.send(None)
    for pixels in [frame_at(0.0, 48, 64), frame_at(0.25, 48, 64), other_shot(), other_shot()]:
        writer.send(np.ascontiguousarray(pixels))
    writer.close()
    out = tmp_path / "out.mp4"
    assert main([str(clip), "-o", str(out), "--factor", "2", "--fast"]) == 0
    assert "note: 1 scene cut(s), before input frame(s) 2 (counted from 0)" in capsys.readouterr().err
    assert video_info(out)[1] == 7


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "much"])
def test_scene_threshold_outside_zero_to_one_is_an_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["a.mp4", "-o", str(tmp_path / "out.mp4"), "--scene-threshold", value])
    assert exit_.value.code == 2
    assert f"--scene-threshold: must be a number from 0 to 1; got {value}" in capsys.readouterr().err


@pytest.mark.parametrize("extension", ["png", "tif"])
def test_sixteen_bit_images_give_sixteen_bit_frames(tmp_path, extension):
    a, b = tmp_path / f"a.{extension}", tmp_path / f"b.{extension}"
    write_sixteen_bit(a, sixteen_bit_frame(0.0))
    write_sixteen_bit(b, sixteen_bit_frame(1.0))
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
    inputs = [sixteen_bit_frame(k / 2) for k in range(3)]
    for k, pixels in enumerate(inputs):
        write_sixteen_bit(frames / f"{k}.png", pixels)
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    written = [cv2.imread(str(tmp_path / "out" / f"{k:05d}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] for k in range(5)]
    assert all(pixels.dtype == np.uint16 for pixels in written)
    for k in (0, 1, 2):
        np.testing.assert_array_equal(written[2 * k], inputs[k])


def _refuse_work(monkeypatch):
    """Makes loading an interpolator fail the test: an error must come before any work."""
    def no_work(*args, **kwargs):
        raise AssertionError("the interpolator was built before the error")
    monkeypatch.setattr(interpolate_module, "build_interpolator", no_work)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("memc-interpolate: error: ") and err.count("\n") == 1, err
    return err[len("memc-interpolate: error: "):].rstrip("\n")


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 3)
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
    ("folder.png", "images", [], "{out} is a folder; expected an output file name"),
    ("folder.mp4", "video", [], "{out} is a folder; expected an output file name"),
])
def test_unusable_output_is_an_error_before_any_work(tmp_path, capsys, monkeypatch, output, inputs, extra, message):
    _refuse_work(monkeypatch)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    os.replace(a, tmp_path / "a.png")
    write_clip(tmp_path / "clip.mp4", 3)
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.mp4").mkdir()
    before = listing(tmp_path)
    sources = [str(tmp_path / "a.png"), b] if inputs == "images" else [str(tmp_path / "clip.mp4")]
    out = tmp_path / output
    assert main([*sources, "-o", str(out), "-q", *extra]) == 1
    assert _error(capsys) == message.format(out=out, tmp=tmp_path)
    assert listing(tmp_path) == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no one can create files")
@pytest.mark.parametrize("output", ["/proc/memc_out.png", "/proc/memc_new/out.png", "/proc/memc_out.mp4"])
def test_output_folder_that_cannot_be_written_is_an_error_before_any_work(tmp_path, capsys, monkeypatch, output):
    _refuse_work(monkeypatch)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 3)
    sources = [str(clip)] if output.endswith(".mp4") else [a, b]
    assert main([*sources, "-o", output, "-q"]) == 1
    assert _error(capsys).startswith(f"{output}: cannot write into the folder /proc (")


def test_failed_video_leaves_no_partial_file_and_the_old_output_untouched(tmp_path, capsys, monkeypatch):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 4)
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
    write_clip(clip, 2)
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    assert main([str(clip), "-o", str(out), "-q", "--fast"]) == 0
    assert os.stat(out).st_mode == os.stat(ordinary).st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "ordinary", "out.mp4"]


@pytest.mark.parametrize("output", ["out.mp4", "out.png"])
def test_one_image_as_input_is_an_error(tmp_path, capsys, monkeypatch, output):
    _refuse_work(monkeypatch)
    a, = write_images(tmp_path, frame_at(0.0, 32, 32))
    assert main([a, "-o", str(tmp_path / output), "-q"]) == 1
    assert _error(capsys) == f"{a} is an image; pass two images, one video or one folder of frames"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame0.png"]


def test_one_frame_video_is_an_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    # One frame has no neighbour to interpolate towards; writing it back would look like success.
    # Found before the model, the output and the progress bar (not -q: _error sees one line only).
    _refuse_work(monkeypatch)
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 1)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "--fast"]) == 1
    assert _error(capsys) == f"{clip}: the video has only 1 frame; there is nothing to interpolate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_input_that_is_a_folder_is_an_error(tmp_path, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    a, = write_images(tmp_path, frame_at(0.0, 32, 32))
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dir.mp4").mkdir()
    assert main([a, str(tmp_path / "dir.png"), "-o", str(tmp_path / "out.png")]) == 1
    assert _error(capsys) == f"{tmp_path / 'dir.png'} is a folder; expected an image file"
    assert main([str(tmp_path / "dir.mp4"), "-o", str(tmp_path / "out.mp4")]) == 1  # a folder of frames, empty
    assert _error(capsys) == (f"{tmp_path / 'dir.mp4'}: holds 0 image(s); a folder of frames needs at least 2 "
                              "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp)")
    with pytest.raises(UserError, match=f"^{tmp_path / 'dir.png'} is a folder; expected an image file$"):
        read_image(str(tmp_path / "dir.png"))


def _stop_before_work(monkeypatch):
    def stop(*args, **kwargs):
        raise UserError("stop")
    monkeypatch.setattr(interpolate_module, "build_interpolator", stop)


def test_options_that_do_nothing_get_a_note(tmp_path, capsys, monkeypatch):
    _stop_before_work(monkeypatch)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
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


# ---------------------------------------------------------------------------------------------
# Outputs are atomic: failures, signals and concurrent runs leave no part of an output


def _folder_of_frames(path, count=4):
    path.mkdir()
    for k in range(count):
        iio.imwrite(path / f"{k}.png", frame_at(k / 4, 32, 48))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_writing_a_folder_leaves_nothing_and_the_rerun_works(tmp_path, signum):
    frames = _folder_of_frames(tmp_path / "frames")
    out = tmp_path / "out"
    process = start_slow_program("interpolate", frames, "-o", out, "-q", seconds=60)  # until stopped
    wait_until_interpolating(process)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    assert process.stderr.read() == f"memc-interpolate: stopped by {signal.Signals(signum).name}\n"
    assert listing(tmp_path) == sorted(["frames", *(f"frames/{k}.png" for k in range(4))])
    assert main([str(frames), "-o", str(out), "-q", "--fast"]) == 0
    assert len(list(out.iterdir())) == 7


def test_sigterm_while_writing_a_video_keeps_the_old_one_byte_for_byte(tmp_path):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 4)
    out.write_bytes(b"the previous output")
    process = start_slow_program("interpolate", clip, "-o", out, "-q", seconds=60)  # until stopped
    wait_until_interpolating(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert process.stderr.read() == "memc-interpolate: stopped by SIGTERM\n"
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]


def test_two_runs_into_one_new_folder_never_mix_their_frames(tmp_path):
    frames = _folder_of_frames(tmp_path / "frames")
    out = tmp_path / "out"
    go = tmp_path / "go"
    first = start_slow_program("interpolate", frames, "-o", out, "-q", seconds=0, until=go)
    wait_until_interpolating(first)  # it has claimed the folder, and waits for the file go
    second = start_slow_program("interpolate", frames, "-o", out, "-q", "--factor", "3", seconds=0)
    assert second.wait(timeout=120) == 1
    assert second.stderr.read() == (f"memc-interpolate: error: {out}: another run is writing frames into it (it holds "
                                    f"{out}.lock); wait for it to finish or choose another folder\n")
    go.write_text("")
    assert first.wait(timeout=120) == 0
    go.unlink()
    assert sorted(p.name for p in out.iterdir()) == [f"{k:05d}.png" for k in range(7)]  # the first run's alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]
    third = run_program("memc_models.cli.interpolate", frames, "-o", out, "-q", "--fast")
    assert third.returncode == 1 and "already holds files" in third.stderr  # never added to


def test_a_full_disk_while_replacing_images_keeps_every_old_one(tmp_path, capsys, monkeypatch):
    a, b = write_images(tmp_path, frame_at(0.0, 32, 48), frame_at(1.0, 32, 48))
    for t in ("0.333", "0.667"):
        (tmp_path / f"out_t{t}.png").write_bytes(b"old " + t.encode())
    full_disk(monkeypatch, lambda path: "out_t0.667" in path)  # the first image fits, the second does not
    assert main([a, b, "-o", str(tmp_path / "out.png"), "--factor", "3", "--fast", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-interpolate: error: {tmp_path / 'out_t0.667.png'}: cannot write it "
                                       "(No space left on device)\n")
    assert [(tmp_path / f"out_t{t}.png").read_bytes() for t in ("0.333", "0.667")] == [b"old 0.333", b"old 0.667"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame0.png", "frame1.png", "out_t0.333.png",
                                                          "out_t0.667.png"]


def test_a_full_disk_while_writing_a_folder_leaves_nothing(tmp_path, capsys, monkeypatch):
    frames = _folder_of_frames(tmp_path / "frames")
    full_disk(monkeypatch, lambda path: "00003" in path)
    assert main([str(frames), "-o", str(tmp_path / "new" / "out"), "--fast", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-interpolate: error: {tmp_path / 'new' / 'out' / '00003.png'}: cannot "
                                       "write it (No space left on device)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


FAILING_ENCODER = """#!{python}
import os, sys
args = sys.argv[1:]
if "-i" in args and args[args.index("-i") + 1] == "-":  # encoding frames from a pipe: the disk fills up
    sys.stdin.buffer.read(20000)
    with open(args[-1], "wb") as handle:
        handle.write(b"the first bytes of a video")
    sys.stderr.write("[out#0/mp4 @ 0x5555] Error writing trailer: No space left on device\\n")
    sys.exit(1)
os.execv({ffmpeg!r}, [{ffmpeg!r}] + args)
"""


def test_a_failing_encoder_is_an_error_and_keeps_the_old_video(tmp_path, capsys, monkeypatch):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 4)
    out.write_bytes(b"the previous output")
    encoder = tmp_path / "ffmpeg"
    encoder.write_text(FAILING_ENCODER.format(python=sys.executable, ffmpeg=imageio_ffmpeg.get_ffmpeg_exe()))
    encoder.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(encoder))
    assert main([str(clip), "-o", str(out), "--fast", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-interpolate: error: {out}: the video encoder failed (out#0/mp4: Error "
                                       "writing trailer: No space left on device)\n")
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "ffmpeg", "out.mp4"]


# ---------------------------------------------------------------------------------------------
# What is wrong with the data is said


def test_a_checkpoint_with_nan_weights_is_an_error_naming_it(tmp_path, capsys):
    import memc_models

    state = memc_models.memc_net_s().state_dict()
    name = next(name for name, value in state.items() if value.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    checkpoint = tmp_path / "broken.pt"
    torch.save(state, checkpoint)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    assert main([a, b, "-o", str(tmp_path / "mid.png"), "--checkpoint", str(checkpoint), "--model", "memc_s"]) == 1
    assert capsys.readouterr().err == (f"memc-interpolate: error: --checkpoint {checkpoint}: the weights are damaged "
                                       f"({name} holds NaN or inf values)\n")
    assert not (tmp_path / "mid.png").exists()


def test_a_model_output_that_is_not_finite_is_an_error_naming_the_checkpoint(tmp_path, capsys, monkeypatch):
    import memc_models
    from memc_models import inference

    class Broken(torch.nn.Module):
        config = memc_models.MEMCNetConfig()

        def forward(self, frame0, frame1, t):
            return torch.full_like(frame0, float("nan"))

    monkeypatch.setattr(inference, "load_model", lambda *args: Broken())
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    assert main([a, b, "-o", str(tmp_path / "mid.png"), "--checkpoint", "weights.pt", "-q"]) == 1
    assert capsys.readouterr().err == ("memc-interpolate: error: --checkpoint weights.pt produced a frame that is not "
                                       "finite (NaN or inf); its weights or settings are broken\n")
    assert not (tmp_path / "mid.png").exists()


def test_a_damaged_jpeg_is_named_with_what_the_decoder_says(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        iio.imwrite(frames / f"{k}.jpg", frame_at(k / 4, 32, 48), quality=95)
    for damaged in ("1.jpg", "2.jpg"):
        data = (frames / damaged).read_bytes()
        # A stray restart marker in the coded data: Pillow decodes the rest without a word.
        (frames / damaged).write_bytes(data[: len(data) // 2] + b"\xff\xd3" + data[len(data) // 2:])
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # each damaged file, once
    for line, damaged in zip(lines, ("1.jpg", "2.jpg")):
        assert line.startswith(f"memc-interpolate: warning: {frames / damaged}: the JPEG decoder reports damage "
                               "(mjpeg: ")


def test_a_damaged_video_is_named_with_the_frame_the_decoder_reached(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 30)
    data = bytearray(clip.read_bytes())
    data[int(len(data) * 0.3): int(len(data) * 0.3) + 200] = bytes(200)
    clip.write_bytes(bytes(data))
    main([str(clip), "-o", str(tmp_path / "out.mp4"), "--fast", "-q", "--scene-threshold", "0"])
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith(f"memc-interpolate: warning: {clip}: the decoder reports damage ")
                         for line in lines), lines
    assert "frame" in lines[0] and len(lines) <= 2


def test_a_video_cut_before_its_index_is_an_error_saying_why(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 10)
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # MP4 keeps its index at the end
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-interpolate: error: {clip}: cannot read it as a video (moov atom not "
                                       "found; Invalid data found when processing input)\n")


# ---------------------------------------------------------------------------------------------
# The pipeline of videos and folders: the same frames as --sequential, one error, a clean stop


def test_the_pipeline_writes_the_frames_of_sequential_byte_for_byte(tmp_path):
    frames = _folder_of_frames(tmp_path / "frames", 5)
    iio.imwrite(frames / "4.png", other_shot(32, 48))  # a scene cut too
    outputs = []
    for extra in ([], ["--sequential"]):
        outputs.append(tmp_path / f"out{len(outputs)}")
        assert main([str(frames), "-o", str(outputs[-1]), "--factor", "3", "-q", *extra]) == 0
    names = sorted(p.name for p in outputs[0].iterdir())
    assert names == sorted(p.name for p in outputs[1].iterdir()) and len(names) == 13
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name


@pytest.mark.parametrize("option", [["--sequential"], ["--scene-threshold", "0.5"]])
def test_stream_options_on_two_images_get_a_note(tmp_path, capsys, monkeypatch, option):
    _stop_before_work(monkeypatch)
    a, b = write_images(tmp_path, frame_at(0.0, 32, 32), frame_at(1.0, 32, 32))
    main([a, b, "-o", str(tmp_path / "out.png"), *option])
    assert f"note: {option[0]} applies to a video or a folder of frames\n" in capsys.readouterr().err


def test_a_frame_that_cannot_be_decoded_mid_run_is_one_error_and_leaves_nothing(tmp_path, capsys):
    frames = _folder_of_frames(tmp_path / "frames")
    data = (frames / "2.png").read_bytes()
    (frames / "2.png").write_bytes(data[: len(data) // 2])  # the header is intact, the pixels cut short
    assert main([str(frames), "-o", str(tmp_path / "out"), "--fast", "-q"]) == 1
    assert str(frames / "2.png") in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


@pytest.mark.parametrize("error, status, message", [
    (UserError("the motion failed"), 1, "memc-interpolate: error: the motion failed\n"),
    (RuntimeError("a bug"), 2,
     "memc-interpolate: internal error: RuntimeError: a bug (set MEMC_TRACEBACK=1 to see where)\n"),
])
def test_an_error_in_the_motion_thread_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, error, status,
                                                                      message):
    from memc_models.streaming import Staged

    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 5)
    out.write_bytes(b"the previous output")
    calls = []

    def motion(frame0, frame1):
        calls.append(1)
        if len(calls) == 3:
            raise error

    def render(frame0, frame1, motion, times):
        return [0.5 * (frame0 + frame1) for _ in times]

    monkeypatch.setattr(interpolate_module, "build_interpolator", lambda *args, **kwargs: Staged(motion, render))
    assert main([str(clip), "-o", str(out), "-q", "--scene-threshold", "0"]) == status
    assert capsys.readouterr().err == message
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]


HANGING_MOTION_PROGRAM = STOP_SIGNALS_AS_FROM_A_TERMINAL + """
import sys, time
from memc_models.cli import interpolate as program
from memc_models.streaming import Staged

calls = []

def motion(frame0, frame1):
    calls.append(1)
    if len(calls) > 1:
        time.sleep(300)  # the reading thread is busy (as in a long DIS) when the run is stopped

def render(frame0, frame1, motion, times):
    print("interpolating", flush=True)
    return [(1 - t) * frame0 + t * frame1 for t in times]

program.build_interpolator = lambda *args, **kwargs: Staged(motion, render)
sys.exit(program.main(sys.argv[1:]))
"""


def test_ctrl_c_stops_the_pipeline_at_once_while_the_motion_thread_is_busy(tmp_path):
    frames = _folder_of_frames(tmp_path / "frames")
    process = subprocess.Popen([sys.executable, "-c", HANGING_MOTION_PROGRAM, str(frames), "-o", str(tmp_path / "out"),
                                "-q", "--scene-threshold", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    wait_until_interpolating(process)
    time.sleep(0.5)  # the main thread now waits for the next pair
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 128 + signal.SIGINT
    assert process.stderr.read() == "memc-interpolate: interrupted\n"
    assert listing(tmp_path) == sorted(["frames", *(f"frames/{k}.png" for k in range(4))])
