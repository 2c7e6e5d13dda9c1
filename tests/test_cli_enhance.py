"""memc-enhance (memc_models.cli.enhance), end to end on small frames and videos made here: one
output frame per input frame, in order, at the right size; its errors; and what it leaves behind
when a run fails or is stopped."""

import signal

import numpy as np
import pytest
import torch

from helpers import (CENTRE_FRAME, clip_with_audio, frame_at, full_disk, iio, listing, start_slow_program, to_tensor,
                     video_info, wait_until_interpolating, write_clip)
from memc_models import enhancement, inference
from memc_models.cli import enhance as enhance_module
from memc_models.cli.enhance import main
from memc_models.errors import UserError
from memc_models.metrics import psnr
from memc_models.video import has_audio


def _frames(folder, count, height=24, width=32, noise=0.0, seed=0):
    """A folder of ``count`` PNG frames of the moving photograph (with Gaussian noise of ``noise``
    on 0..255); returns the clean frames."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    clean = [frame_at(k / 4, height, width) for k in range(count)]
    for k, pixels in enumerate(clean):
        noisy = np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 255).round().astype(np.uint8)
        iio.imwrite(folder / f"{k}.png", noisy)
    return clean


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("memc-enhance: error: ") and err.count("\n") == 1, err
    return err[len("memc-enhance: error: "):].rstrip("\n")


def _centre_frame(monkeypatch, calls=None):
    """The enhancer gives each window's centre frame unchanged (recording (window, centre) in
    ``calls``): the output must then be the input."""
    def build(device, task, checkpoint=None, **options):
        def enhance(frames, centre):
            if calls is not None:
                calls.append((frames.clone(), centre))
            return frames[centre]
        return enhance
    monkeypatch.setattr(enhance_module, "build_enhancer", build)


def _refuse_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the enhancer was built before the error")
    monkeypatch.setattr(enhance_module, "build_enhancer", refuse)


# ---------------------------------------------------------------------------------------------
# One output frame per input frame, in order


def test_each_frame_is_restored_from_its_centred_window_in_order(tmp_path, monkeypatch):
    calls = []
    _centre_frame(monkeypatch, calls)
    _frames(tmp_path / "frames", 6)
    out = tmp_path / "out"
    assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "denoise", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{k:05d}.png" for k in range(6)]
    inputs = [iio.imread(tmp_path / "frames" / f"{k}.png") for k in range(6)]
    for k in range(6):
        np.testing.assert_array_equal(iio.imread(out / f"{k:05d}.png"), inputs[k])
        window, centre = calls[k]
        neighbours = list(range(max(0, k - 3), min(6, k + 4)))  # three on each side, fewer at the ends
        assert window.shape[0] == len(neighbours) and neighbours[centre] == k
        for frame, index in zip(window, neighbours):
            torch.testing.assert_close(frame.unsqueeze(0), to_tensor(inputs[index]), rtol=0, atol=0)


def test_denoising_a_folder_of_noisy_frames_gains_psnr(tmp_path):
    clean = _frames(tmp_path / "noisy", 4, 48, 64, noise=20.0)
    out = tmp_path / "out"
    assert main([str(tmp_path / "noisy"), "-o", str(out), "--task", "denoise", "--sigma", "20", "--device", "cpu",
                 "-q"]) == 0
    for k in range(4):
        truth = to_tensor(clean[k])
        before = psnr(to_tensor(iio.imread(tmp_path / "noisy" / f"{k}.png")), truth)
        after = psnr(to_tensor(iio.imread(out / f"{k:05d}.png")), truth)
        assert after > before + 3, (k, before, after)


@pytest.mark.parametrize("scale", [None, "2"])
def test_super_resolution_of_a_folder_is_scale_times_larger(tmp_path, scale):
    _frames(tmp_path / "small", 3, 12, 16)
    option = ["--scale", scale] if scale else []
    assert main([str(tmp_path / "small"), "-o", str(tmp_path / "large"), "--task", "sr", *option, "-q"]) == 0
    factor = int(scale or 4)  # 4 by default
    shapes = [iio.imread(tmp_path / "large" / f"{k:05d}.png").shape for k in range(3)]
    assert shapes == [(12 * factor, 16 * factor, 3)] * 3


@pytest.mark.parametrize("task, extra, size", [("deblock", [], (32, 48)), ("sr", ["--scale", "2"], (64, 96))])
def test_video_has_one_frame_per_input_at_the_same_rate(tmp_path, task, extra, size):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mkv"
    write_clip(clip, 5, 32, 48)
    assert main([str(clip), "-o", str(out), "--task", task, *extra, "-q"]) == 0
    meta, count = video_info(out)
    assert count == 5 and tuple(meta["size"]) == (size[1], size[0]) and meta["fps"] == pytest.approx(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mkv"]


def test_keep_audio_copies_the_audio_and_without_it_a_note_says_it_is_dropped(tmp_path, capsys, monkeypatch):
    _centre_frame(monkeypatch)
    clip = clip_with_audio(tmp_path)
    assert main([str(clip), "-o", str(tmp_path / "kept.mp4"), "--task", "denoise", "--keep-audio"]) == 0
    assert "note:" not in capsys.readouterr().err and has_audio(str(tmp_path / "kept.mp4"))
    assert main([str(clip), "-o", str(tmp_path / "silent_out.mp4"), "--task", "denoise"]) == 0
    assert f"note: {clip} has audio; the output has none (--keep-audio copies it)" in capsys.readouterr().err
    assert not has_audio(str(tmp_path / "silent_out.mp4"))


# ---------------------------------------------------------------------------------------------
# --checkpoint: MEMC-Net_VE weights


class _FakeVE(torch.nn.Module):
    """Stands in for MEMC-Net_VE: records the frames it is given, returns their centre."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, frames, centre):
        self.seen.append((tuple(frames.shape), centre))
        return frames[:, centre]


def test_a_checkpoint_for_sr_gets_the_frames_bicubic_upsampled_first(tmp_path, capsys, monkeypatch):
    fake = _FakeVE()
    monkeypatch.setattr(inference, "load_enhancement_model", lambda path, device: fake)
    _frames(tmp_path / "small", 4, 12, 16)
    out = tmp_path / "large"
    checkpoint = tmp_path / "MEMC-Net_SR.pth"
    assert main([str(tmp_path / "small"), "-o", str(out), "--task", "sr", "--scale", "2", "--checkpoint",
                 str(checkpoint)]) == 0
    assert "note:" not in capsys.readouterr().err
    assert fake.seen == [((1, 4, 3, 24, 32), 0), ((1, 4, 3, 24, 32), 1), ((1, 4, 3, 24, 32), 2), ((1, 4, 3, 24, 32), 3)]
    assert iio.imread(out / "00000.png").shape == (24, 32, 3)


@pytest.mark.parametrize("extra, strength", [([], None), (["--strength", "9.5"], 9.5)])
def test_deblocking_strength_reaches_the_training_free_path(tmp_path, monkeypatch, extra, strength):
    seen = []

    def enhance(frames, centre, task, **options):
        seen.append((task, options))
        return frames[centre]

    monkeypatch.setattr(enhancement, "enhance", enhance)
    _frames(tmp_path / "frames", 3)
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--task", "deblock", *extra, "-q"]) == 0
    assert seen == [("deblock", {"strength": strength})] * 3  # None: the library's default


def test_a_stronger_deblocking_changes_the_frames_more(tmp_path):
    _frames(tmp_path / "frames", 3, 32, 48, noise=6.0)
    changes = []
    for strength in ("2", "12"):
        out = tmp_path / f"out{strength}"
        assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "deblock", "--strength", strength, "-q"]) == 0
        restored = iio.imread(out / "00001.png").astype(np.float64)
        changes.append(np.abs(restored - iio.imread(tmp_path / "frames" / "1.png")).mean())
    assert changes[1] > changes[0] > 0


def test_a_checkpoint_notes_options_and_tasks_that_do_not_match_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inference, "load_enhancement_model", lambda path, device: _FakeVE())
    _frames(tmp_path / "frames", 3)
    checkpoint = tmp_path / "MEMC-Net_SR.pth"
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--task", "denoise", "--sigma", "10",
                 "--checkpoint", str(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "note: --sigma applies to the training-free path; the --checkpoint model does not take it\n" in err
    assert f"note: --checkpoint {checkpoint} was released for super-resolution; running it for --task denoise\n" in err


def test_half_reaches_a_checkpoint_model_and_is_noted_without_one(tmp_path, capsys, monkeypatch):
    built = []

    def build(device, task, checkpoint=None, **options):
        built.append((checkpoint, options["half"]))
        return lambda frames, centre: frames[centre]

    monkeypatch.setattr(enhance_module, "build_enhancer", build)
    _frames(tmp_path / "frames", 3)
    checkpoint = str(tmp_path / "MEMC-Net_DN.pth")
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "a"), "--task", "denoise", "--half",
                 "--checkpoint", checkpoint]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "b"), "--task", "denoise", "--half"]) == 0
    assert "note: --half applies to MEMC-Net models; the default path runs in float32\n" in capsys.readouterr().err
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "c"), "--task", "denoise", "--checkpoint",
                 checkpoint, "-q"]) == 0
    assert built == [(checkpoint, True), (None, True), (checkpoint, False)]


def test_an_interpolation_checkpoint_is_an_error_naming_its_model(tmp_path, capsys):
    import memc_models

    checkpoint = tmp_path / "memc_s.pth"
    torch.save(memc_models.memc_net_s().state_dict(), checkpoint)
    _frames(tmp_path / "frames", 3)
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--task", "denoise", "--checkpoint",
                 str(checkpoint)]) == 1
    assert _error(capsys) == (f"--checkpoint {checkpoint} is an interpolation model (memc-interpolate --model memc_s); "
                              "an enhancement model is needed (the authors' MEMC-Net_SR.pth, MEMC-Net_DN.pth or "
                              "MEMC-Net_DB.pth, or a saved memc_models.memc_net_ve())")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "memc_s.pth"]


# ---------------------------------------------------------------------------------------------
# Errors: one line, status 1, before any work


@pytest.mark.parametrize("case, arguments, message", [
    ("missing input", ["{tmp}/absent.mp4", "-o", "{tmp}/out.mp4", "--task", "denoise"],
     "{tmp}/absent.mp4: no such file or folder"),
    ("bad task", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "sharpen"],
     "--task must be one of denoise, deblock, sr; got 'sharpen'"),
    ("bad scale", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "sr", "--scale", "3"],
     "--scale must be 2 or 4; got 3"),
    ("scale without sr", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "denoise", "--scale", "2"],
     "--scale applies to --task sr; --task denoise keeps the frame size"),
    ("negative sigma", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "denoise", "--sigma", "-5"],
     "--sigma must be a number from 0 to 255 (the noise's standard deviation on 0..255); got -5"),
    ("sigma not a number", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "denoise", "--sigma", "nan"],
     "--sigma must be a number from 0 to 255 (the noise's standard deviation on 0..255); got nan"),
    ("sigma without denoise", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "deblock", "--sigma", "5"],
     "--sigma applies to --task denoise (the noise's standard deviation); got --task deblock"),
    ("strength without deblock", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "denoise", "--strength", "6"],
     "--strength applies to --task deblock (the artefacts' level treated as noise); got --task denoise"),
    ("strength too large", ["{tmp}/clip.mp4", "-o", "{tmp}/out.mp4", "--task", "deblock", "--strength", "300"],
     "--strength must be a number from 0 to 255 (the artefacts' level treated as noise on 0..255); got 300"),
    ("an image", ["{tmp}/frames/0.png", "-o", "{tmp}/out.mp4", "--task", "denoise"],
     "{tmp}/frames/0.png is an image; memc-enhance takes a video or a folder of frames (each frame is restored "
     "from its neighbours)"),
    ("output format", ["{tmp}/clip.mp4", "-o", "{tmp}/out.gif", "--task", "denoise"],
     "{tmp}/out.gif: an output video needs one of the extensions .mp4, .m4v, .mov, .mkv, .avi, .webm"),
    ("output is the input", ["{tmp}/clip.mp4", "-o", "{tmp}/clip.mp4", "--task", "denoise"],
     "-o {tmp}/clip.mp4 is the input {tmp}/clip.mp4; choose another output name"),
    ("output folder is the input", ["{tmp}/frames", "-o", "{tmp}/frames", "--task", "denoise"],
     "-o {tmp}/frames is the input folder; choose another output folder"),
    ("output folder holds files", ["{tmp}/frames", "-o", "{tmp}/full", "--task", "denoise"],
     "-o {tmp}/full already holds files; choose a new or empty folder"),
    ("output folder is a file", ["{tmp}/frames", "-o", "{tmp}/clip.mp4", "--task", "denoise"],
     "-o {tmp}/clip.mp4 is a file; expected a new or empty folder"),
    ("output folder named like a video", ["{tmp}/frames", "-o", "{tmp}/x10.mp4", "--task", "sr", "--scale", "2"],
     "-o {tmp}/x10.mp4: a folder of frames becomes a folder of frames, not a video; give a folder name without a "
     "video extension (.mp4)"),
    ("too few frames", ["{tmp}/two", "-o", "{tmp}/out", "--task", "denoise"],
     "{tmp}/two: holds 2 frame(s); memc-enhance needs at least 3 (each frame is restored from 2 to 6 neighbours)"),
])
def test_bad_input_is_one_line_and_status_one_before_any_work(tmp_path, capsys, monkeypatch, case, arguments, message):
    _refuse_work(monkeypatch)
    write_clip(tmp_path / "clip.mp4", 3, 16, 16)
    _frames(tmp_path / "frames", 3)
    _frames(tmp_path / "two", 2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("keep me")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert main([argument.format(tmp=tmp_path) for argument in arguments] + ["-q"]) == 1
    assert _error(capsys) == message.format(tmp=tmp_path)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    assert not (tmp_path / "x10.mp4").exists()


@pytest.mark.parametrize("content, message", [
    (None, "--checkpoint {path}: no such file"),
    (b"garbage", "--checkpoint {path}: cannot read it as a PyTorch checkpoint"),
    ({"weight": torch.zeros(2)}, "--checkpoint {path} is not an enhancement model checkpoint ("),
])
def test_a_checkpoint_that_is_not_an_enhancement_model_is_an_error(tmp_path, capsys, content, message):
    _frames(tmp_path / "frames", 3)
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    assert main([str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--task", "denoise", "--checkpoint",
                 str(path)]) == 1
    assert _error(capsys).startswith(message.format(path=path))
    assert not (tmp_path / "out").exists()


def test_frames_too_small_to_estimate_their_noise_need_sigma(tmp_path, capsys):
    _frames(tmp_path / "tiny", 3, 6, 8)
    out = tmp_path / "out"
    assert main([str(tmp_path / "tiny"), "-o", str(out), "--task", "denoise", "-q"]) == 1
    assert _error(capsys) == (f"{tmp_path / 'tiny'}: the frames are 8x6; estimating their noise needs at least 7x7 "
                              "pixels: give --sigma")
    assert not out.exists()
    assert main([str(tmp_path / "tiny"), "-o", str(out), "--task", "denoise", "--sigma", "5", "-q"]) == 0
    assert iio.imread(out / "00002.png").shape == (6, 8, 3)


def test_a_video_of_two_frames_is_an_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    # Found before the model, the output and the progress bar (not -q: _error sees one line only).
    _refuse_work(monkeypatch)
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 2, 16, 16)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "--task", "denoise"]) == 1
    assert _error(capsys) == (f"{clip}: holds 2 frame(s); memc-enhance needs at least 3 (each frame is restored from "
                              "2 to 6 neighbours)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_folder_of_fewer_than_three_frames_is_one_message_and_writes_nothing(tmp_path, capsys, monkeypatch, count):
    # The same words as a short video's (one check for both), "no frames" for none.
    _refuse_work(monkeypatch)
    frames = tmp_path / "frames"
    if count:
        _frames(frames, count)
    else:
        frames.mkdir()
    assert main([str(frames), "-o", str(tmp_path / "out"), "--task", "denoise"]) == 1
    held = f"{count} frame(s)" if count else "no frames"
    assert _error(capsys) == (f"{frames}: holds {held}; memc-enhance needs at least 3 (each frame is restored from "
                              "2 to 6 neighbours)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# ---------------------------------------------------------------------------------------------
# Outputs are atomic: failures, signals and a full disk leave no part of an output


def _fails_on_the_third_frame(monkeypatch):
    def build(device, task, checkpoint=None, **options):
        calls = []

        def enhance(frames, centre):
            calls.append(centre)
            if len(calls) == 3:
                raise UserError("stopped in the middle")
            return frames[centre]
        return enhance
    monkeypatch.setattr(enhance_module, "build_enhancer", build)


def test_a_failed_video_run_keeps_the_old_output_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    _fails_on_the_third_frame(monkeypatch)
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 5, 16, 16)
    out.write_bytes(b"the previous output")
    assert main([str(clip), "-o", str(out), "--task", "denoise", "-q"]) == 1
    assert _error(capsys) == "stopped in the middle"
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]


def test_a_failed_folder_run_leaves_no_folder_and_can_run_again(tmp_path, capsys, monkeypatch):
    _fails_on_the_third_frame(monkeypatch)
    _frames(tmp_path / "frames", 5)
    out = tmp_path / "new" / "out"
    assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "denoise", "-q"]) == 1
    assert _error(capsys) == "stopped in the middle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    _centre_frame(monkeypatch)
    assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "denoise", "-q"]) == 0
    assert len(list(out.iterdir())) == 5


def test_a_full_disk_while_writing_a_folder_leaves_nothing(tmp_path, capsys, monkeypatch):
    _centre_frame(monkeypatch)
    _frames(tmp_path / "frames", 4)
    full_disk(monkeypatch, lambda path: "00002" in path)
    out = tmp_path / "out"
    assert main([str(tmp_path / "frames"), "-o", str(out), "--task", "denoise", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-enhance: error: {out / '00002.png'}: cannot write it (No space left on "
                                       "device)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_writing_a_folder_leaves_nothing(tmp_path, signum):
    _frames(tmp_path / "frames", 4)
    process = start_slow_program("enhance", tmp_path / "frames", "-o", tmp_path / "out", "--task", "denoise", "-q",
                                 seconds=60, builder="build_enhancer", result=CENTRE_FRAME)
    wait_until_interpolating(process)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    stopped = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    assert process.stderr.read() == f"memc-enhance: {stopped}\n"
    assert listing(tmp_path) == sorted(["frames", *(f"frames/{k}.png" for k in range(4))])


def test_sigterm_while_writing_a_video_keeps_the_old_one_byte_for_byte(tmp_path):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    write_clip(clip, 4, 16, 16)
    out.write_bytes(b"the previous output")
    process = start_slow_program("enhance", clip, "-o", out, "--task", "sr", "-q", seconds=60, builder="build_enhancer",
                                 result=CENTRE_FRAME)
    wait_until_interpolating(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert process.stderr.read() == "memc-enhance: stopped by SIGTERM\n"
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]
