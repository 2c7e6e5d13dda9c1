"""memc-eval (memc_models.cli.evaluate): the command on Middlebury- and Vimeo90K-style folders and
videos made here (plus the real Middlebury frames when ../shared is present), its table, and how it
names what it cannot use."""

import math
import os
import pathlib
import shutil
import signal

import numpy as np
import pytest
import torch

from helpers import (frame_at, iio, start_slow_program, variable_rate_clip, wait_until_interpolating,
                     write_clip)
from memc_models.cli import evaluate as evaluate_module
from memc_models.cli.evaluate import format_table, main
from memc_models.errors import UserError
from memc_models.video import VideoReader

SHARED_MIDDLEBURY = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "middlebury"




def _write_sequence(folder: pathlib.Path, names, times, height=64, width=80):
    folder.mkdir(parents=True)
    for name, t in zip(names, times):
        iio.imwrite(folder / name, frame_at(t, height, width))


def _table_rows(text: str):
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) == 10:
            try:
                rows[cells[0]] = [float(c) for c in cells[1:]]
            except ValueError:
                pass
    return rows


def test_middlebury_command(tmp_path, capsys):
    for name, speed in (("Slow", 0.5), ("Fast", 1.0)):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for file, t in (("frame10.png", 0.0), ("frame10i11.png", 0.5), ("frame11.png", 1.0)):
            iio.imwrite(folder / file, frame_at(t, 64, 80, speed))
    (tmp_path / "data" / "NoTruth").mkdir()  # skipped: not a complete sequence
    save = tmp_path / "saved"
    assert main(["middlebury", str(tmp_path / "data"), "--save", str(save), "--device", "cpu", "-q"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert set(rows) == {"Slow", "Fast", "mean"}
    for name in ("Slow", "Fast", "mean"):
        ie_ours, ie_average = rows[name][0], rows[name][1]
        assert ie_ours < 0.5 * ie_average, (name, rows[name])
    assert iio.imread(save / "Fast_ours.png").shape == (64, 80, 3)
    assert iio.imread(save / "Fast_compare.png").shape == (2 * 64, 3 * 80, 3)


def test_vimeo_command_reads_triplets_and_septuplets(tmp_path, capsys):
    _write_sequence(tmp_path / "sequences" / "00001" / "0001", [f"im{k}.png" for k in (1, 2, 3)], [0.0, 0.5, 1.0])
    _write_sequence(tmp_path / "sequences" / "00001" / "0002", [f"im{k}.png" for k in range(1, 8)],
                    [k / 6 for k in range(7)])
    assert main(["vimeo", str(tmp_path), "--device", "cpu", "-q"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert set(rows) == {"sequences/00001/0001", "sequences/00001/0002/im2", "sequences/00001/0002/im4",
                         "sequences/00001/0002/im6", "mean"}
    assert main(["vimeo", str(tmp_path), "--limit", "1", "-q"]) == 0
    assert len(_table_rows(capsys.readouterr().out)) == 2


def test_video_command_holds_out_each_inner_frame(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 6, 48, 64)  # frames at t = 0, 1/4, ..., 5/4 of the known motion
    save = tmp_path / "saved"
    assert main(["video", str(clip), "--save", str(save), "--device", "cpu", "-q", "--fast"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert set(rows) == {f"frame{k:05d}" for k in range(1, 5)} | {"mean"}
    ie_ours, ie_average = rows["mean"][0], rows["mean"][1]
    assert ie_ours < 0.6 * ie_average, rows["mean"]
    assert iio.imread(save / "frame00002_ours.png").shape == (48, 64, 3)
    assert iio.imread(save / "frame00002_compare.png").shape == (2 * 48, 3 * 64, 3)
    assert main(["video", str(clip), "--limit", "2", "-q", "--fast"]) == 0
    assert set(_table_rows(capsys.readouterr().out)) == {"frame00001", "frame00002", "mean"}


def test_video_command_compares_with_the_frames_it_holds_out(tmp_path, capsys, monkeypatch):
    # Each held-out frame is the truth for the interpolation between its two neighbours.
    clip = tmp_path / "clip.mkv"
    write_clip(clip, 5, 32, 48)
    seen = []

    def neighbours_mean(device, *args, **kwargs):
        def interpolate(first, second, times):
            seen.append((first, second))
            return [0.5 * (first + second)]
        return interpolate

    monkeypatch.setattr(evaluate_module, "build_interpolator", neighbours_mean)
    assert main(["video", str(clip), "-q"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    for k in range(1, 4):
        assert rows[f"frame{k:05d}"][0] == rows[f"frame{k:05d}"][1]  # ours is the frame average here
    frames = [torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None] for f in VideoReader(str(clip))]
    assert len(seen) == 3
    for k, (first, second) in enumerate(seen):
        assert torch.equal(first, frames[k]) and torch.equal(second, frames[k + 2])


def test_video_command_holds_out_the_stored_frames_of_a_variable_rate_video(tmp_path, capsys):
    # 12 frames: 8 at 10 fps, then one a second. Read at a constant rate, FFmpeg would repeat the
    # last ones many times over, and the table would score copies of the neighbours.
    variable = variable_rate_clip(tmp_path)
    assert main(["video", str(variable), "-q", "--fast"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert set(rows) == {f"frame{k:05d}" for k in range(1, 11)} | {"mean"}
    assert all(math.isfinite(row[5]) for row in rows.values())  # no held-out frame equals a neighbour


@pytest.mark.parametrize("count", [1, 2])
def test_video_with_fewer_than_three_frames_is_an_error(tmp_path, capsys, count):
    clip = tmp_path / "short.mp4"
    write_clip(clip, count, 32, 48)
    assert main(["video", str(clip), "-q", "--fast"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"memc-eval: error: {clip}: the video has {count} frame(s); holding one out needs at least 3")


def test_video_command_notes_a_file_cut_short(tmp_path, capsys):
    whole = tmp_path / "whole.mkv"
    write_clip(whole, 40, 32, 48)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["video", str(cut), "--fast", "--limit", "2"]) == 0
    assert (f"note: {cut} stops well before the 4 s its header announces: the file looks cut short; evaluating "
            "the frames it holds") in capsys.readouterr().err
    assert main(["video", str(whole), "--fast", "--limit", "2"]) == 0
    assert "cut short" not in capsys.readouterr().err


@pytest.mark.parametrize("count", [1, 2])
def test_video_with_fewer_than_three_frames_is_an_error_before_any_work(tmp_path, capsys, no_model, count):
    clip = tmp_path / "short.mp4"
    write_clip(clip, count, 32, 48)
    save = tmp_path / "saved"
    assert main(["video", str(clip), "--save", str(save)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"memc-eval: error: {clip}: the video has {count} frame(s); holding one out needs at least 3")
    assert not save.exists()


def test_ctrl_c_stops_without_a_traceback(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        def interpolate(first, second, times):
            raise KeyboardInterrupt
        return interpolate

    monkeypatch.setattr(evaluate_module, "build_interpolator", interrupted)
    assert main(["middlebury", str(_middlebury(tmp_path / "data"))]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "memc-eval: interrupted"


def test_video_that_cannot_be_read_is_an_error_before_any_work(tmp_path, capsys, no_model):
    not_video = tmp_path / "notes.txt"
    not_video.write_text("no frames here")
    for path, message in ((tmp_path / "absent.mp4", f"{tmp_path / 'absent.mp4'}: no such file"),
                          (tmp_path, f"{tmp_path} is a folder; expected a video file")):
        assert main(["video", str(path)]) == 1
        assert capsys.readouterr().err.strip() == f"memc-eval: error: {message}"
    assert main(["video", str(not_video)]) == 1
    assert capsys.readouterr().err.startswith(f"memc-eval: error: {not_video}: cannot read it as a video")


def test_missing_or_empty_folder_is_an_error(tmp_path, capsys):
    assert main(["middlebury", str(tmp_path / "absent")]) != 0
    assert "no such folder" in capsys.readouterr().err
    assert main(["vimeo", str(tmp_path)]) != 0
    assert "no Vimeo90K sequence" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_MIDDLEBURY.is_dir(), reason="the shared Middlebury frames are not present")
def test_real_middlebury_frames(capsys):
    assert main(["middlebury", str(SHARED_MIDDLEBURY), "--device", "cpu", "-q"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    ie_ours, ie_average = rows["mean"][0], rows["mean"][1]
    # Measured 2.368 (frame averaging 3.322); the bar is 2.4 over Middlebury's "other" set.
    assert ie_ours <= 2.4 and ie_ours < ie_average - 0.7
    assert main(["middlebury", str(SHARED_MIDDLEBURY), "--device", "cpu", "-q", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "one orientation" in out
    # Measured 2.424 for one orientation.
    assert _table_rows(out)["mean"][0] < 2.5


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if memc-eval gets as far as building the interpolator (the expensive work)."""
    def refuse(*args, **kwargs):
        raise AssertionError("memc-eval built a model before rejecting its arguments")
    monkeypatch.setattr(evaluate_module, "build_interpolator", refuse)


def _middlebury(root: pathlib.Path, height=64, width=80) -> pathlib.Path:
    for file, t in (("frame10.png", 0.0), ("frame10i11.png", 0.5), ("frame11.png", 1.0)):
        (root / "Seq").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / "Seq" / file, frame_at(t, height, width))
    return root


def test_save_folder_that_cannot_be_made_is_an_error_before_any_work(tmp_path, capsys, no_model):
    data = _middlebury(tmp_path / "data")
    a_file = tmp_path / "a.png"
    a_file.write_bytes(b"")
    assert main(["middlebury", str(data), "--save", str(a_file), "-q"]) == 1
    assert capsys.readouterr().err == f"memc-eval: error: --save {a_file}: {a_file} exists and is not a folder\n"
    assert main(["middlebury", str(data), "--save", str(a_file / "x"), "-q"]) == 1
    assert capsys.readouterr().err == f"memc-eval: error: --save {a_file / 'x'}: {a_file} exists and is not a folder\n"


@pytest.mark.parametrize("speed, method", [
    ([], "training-free default (DIS + projection + adaptive warping, 4-orientation ensemble)"),
    (["--fast"], "training-free fast (DIS + projection + adaptive warping, one orientation)"),
])
def test_the_header_names_the_method_that_ran(tmp_path, capsys, monkeypatch, speed, method):
    data = _middlebury(tmp_path / "data", 32, 48)
    built = []

    def average(device, checkpoint, model, half, fast, note):
        built.append(fast)
        return lambda first, second, times: [0.5 * (first + second)]

    monkeypatch.setattr(evaluate_module, "build_interpolator", average)
    assert main(["middlebury", str(data), "--device", "cpu", "-q", *speed]) == 0
    assert built == [bool(speed)]
    assert capsys.readouterr().out.splitlines()[0] == (f"ours: {method} on cpu; avg: frame averaging; times include "
                                                       "optical flow")


def test_saved_files_appear_together_at_the_end_and_not_after_a_failure(tmp_path, capsys, monkeypatch):
    data = _middlebury(tmp_path / "data")
    (data / "Other").mkdir()
    for file in ("frame10.png", "frame10i11.png", "frame11.png"):
        (data / "Other" / file).write_bytes((data / "Seq" / file).read_bytes())
    save = tmp_path / "new" / "saved"
    seen = []

    def average(first, second, times):
        seen.append(save.exists() and sorted(p.name for p in save.iterdir() if ".partial-" not in p.name))
        return [0.5 * (first + second)]

    monkeypatch.setattr(evaluate_module, "build_interpolator", lambda *a, **k: average)
    assert main(["middlebury", str(data), "--save", str(save), "-q"]) == 0
    assert seen == [False, False]  # nothing in place while the run goes on
    assert sorted(p.name for p in save.iterdir()) == ["Other_compare.png", "Other_ours.png", "Seq_compare.png",
                                                       "Seq_ours.png"]

    def fails_second(first, second, times):
        if len(seen) == 1:
            raise UserError("stopped in the middle")
        seen.append(1)
        return [0.5 * (first + second)]

    seen.clear()
    monkeypatch.setattr(evaluate_module, "build_interpolator", lambda *a, **k: fails_second)
    other = tmp_path / "other"
    assert main(["middlebury", str(data), "--save", str(other / "saved"), "-q"]) == 1
    assert not other.exists()  # neither files nor the folders made for them


@pytest.mark.parametrize("taken", ["files", "a file"])
def test_save_folder_taken_during_the_run_prints_the_table_and_keeps_the_images_beside_it(tmp_path, capsys,
                                                                                          monkeypatch, taken):
    data = _middlebury(tmp_path / "data")
    save = tmp_path / "saved"
    (tmp_path / "saved-2").mkdir()
    (tmp_path / "saved-2" / "keep.txt").write_text("another run's")  # taken too: the next free name is used

    def average_while_someone_writes_into_save(first, second, times):
        if taken == "files":
            save.mkdir()
            (save / "theirs.png").write_bytes(b"someone else's picture")
        else:
            save.write_bytes(b"someone else's file")
        return [0.5 * (first + second)]

    monkeypatch.setattr(evaluate_module, "build_interpolator",
                        lambda *a, **k: average_while_someone_writes_into_save)
    assert main(["middlebury", str(data), "--save", str(save), "-q"]) == 1
    captured = capsys.readouterr()
    assert set(_table_rows(captured.out)) == {"Seq", "mean"}  # the results are printed all the same
    assert captured.err == (f"memc-eval: error: --save {save}: other files appeared in it during the run, so this "
                            f"run's frames and comparisons were kept in {save}-3 instead (the table is above)\n")
    if taken == "files":
        assert [p.name for p in save.iterdir()] == ["theirs.png"]
    else:
        assert save.read_bytes() == b"someone else's file"
    assert [p.name for p in (tmp_path / "saved-2").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in (tmp_path / "saved-3").iterdir()) == ["Seq_compare.png", "Seq_ours.png"]
    # No lock and no temporary left:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "saved", "saved-2", "saved-3"]


@pytest.mark.parametrize("limit", ["0", "-2"])
def test_limit_must_be_at_least_one(tmp_path, capsys, limit, no_model):
    with pytest.raises(SystemExit) as exit:
        main(["middlebury", str(tmp_path), "--limit", limit])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"memc-eval: error: argument --limit: must be a whole number, 1 or more; got {limit}")


def test_vimeo_test_list_naming_missing_or_incomplete_folders_is_an_error(tmp_path, capsys, no_model):
    _write_sequence(tmp_path / "sequences" / "00001" / "0001", ["im1.png", "im2.png", "im3.png"], [0.0, 0.5, 1.0])
    _write_sequence(tmp_path / "sequences" / "00001" / "0002", ["im1.png", "im3.png"], [0.0, 1.0])  # no truth
    (tmp_path / "tri_testlist.txt").write_text("00001/0001\n00001/0002\n00009/0009\n")
    assert main(["vimeo", str(tmp_path), "-q"]) == 1
    sequences = tmp_path / "sequences"
    assert capsys.readouterr().err == (
        f"memc-eval: error: {tmp_path / 'tri_testlist.txt'} lists 2 folder(s) without im1.png, im2.png, im3.png, "
        f"e.g. {sequences / '00001' / '0002'}, {sequences / '00009' / '0009'}\n")
    (tmp_path / "tri_testlist.txt").write_text("\n")
    assert main(["vimeo", str(tmp_path), "-q"]) == 1
    assert capsys.readouterr().err == f"memc-eval: error: {tmp_path / 'tri_testlist.txt'} is empty\n"


def test_vimeo_septuplet_list_needs_all_seven_frames(tmp_path, capsys, no_model):
    _write_sequence(tmp_path / "00001" / "0001", [f"im{k}.png" for k in (1, 2, 3)], [0.0, 0.5, 1.0])
    (tmp_path / "sep_testlist.txt").write_text("00001/0001\n")
    assert main(["vimeo", str(tmp_path), "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-eval: error: {tmp_path / 'sep_testlist.txt'} lists 1 folder(s) without "
                                       f"im1.png .. im7.png, e.g. {tmp_path / '00001' / '0001'}\n")


def test_table_shows_ssim_as_na_and_averages_it_over_the_other_samples():
    values = {"IE": 1.0, "RMSE": 2.0, "PSNR": 30.0}
    rows = [("big", {**values, "SSIM": 0.9}, {**values, "SSIM": 0.8}, 0.1),
            ("tiny", {**values, "SSIM": math.nan}, {**values, "SSIM": math.nan}, 0.1)]
    lines = format_table(rows).splitlines()
    assert lines[3].split()[7:9] == ["n/a", "n/a"]
    assert lines[5].split()[7:9] == ["0.9000", "0.8000"]  # the mean row
    assert lines[6] == ("SSIM n/a: 1 of 2 sample(s) have frames smaller than SSIM's 11 x 11 window; the mean SSIM is "
                        "over the others")
    assert "n/a" not in format_table(rows[:1])


def test_table_shows_exact_frames_as_psnr_inf_and_averages_psnr_over_the_others():
    values = {"IE": 1.0, "RMSE": 2.0, "SSIM": 0.9}
    rows = [("moving", {**values, "PSNR": 30.0}, {**values, "PSNR": 20.0}, 0.1),
            ("still", {**values, "PSNR": math.inf}, {**values, "PSNR": math.inf}, 0.1)]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[0] == "sample"
    assert lines[3].split()[5:7] == ["inf", "inf"]
    assert lines[5].split()[5:7] == ["30.00", "20.00"]  # the mean row
    assert lines[6:] == ["PSNR inf: ours reproduces 1 of 2 sample(s) exactly; its mean PSNR is over the others",
                         "PSNR inf: frame average reproduces 1 of 2 sample(s) exactly; its mean PSNR is over the "
                         "others"]
    assert format_table(rows[1:]).splitlines()[4].split()[5:7] == ["inf", "inf"]  # all exact: the mean is inf


def test_tiny_frames_are_evaluated_with_ssim_na(tmp_path, capsys):
    data = _middlebury(tmp_path / "data", 8, 10)
    assert main(["middlebury", str(data), "--device", "cpu", "--fast", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[0] == "Seq" and lines[3].split()[7:9] == ["n/a", "n/a"]
    assert lines[-1] == "SSIM n/a: 1 of 1 sample(s) have frames smaller than SSIM's 11 x 11 window"


def test_half_without_a_checkpoint_gets_a_note(tmp_path, capsys, monkeypatch):
    data = _middlebury(tmp_path / "data", 16, 16)
    monkeypatch.setattr(evaluate_module, "build_interpolator", lambda *a, **k: (
        lambda first, second, times: [0.5 * (first + second)]))
    assert main(["middlebury", str(data), "--half"]) == 0
    assert "note: --half applies to MEMC-Net models; the default path runs in float32\n" in capsys.readouterr().err
    assert main(["middlebury", str(data), "--half", "-q"]) == 0
    assert "note" not in capsys.readouterr().err


def _average(monkeypatch):
    monkeypatch.setattr(evaluate_module, "build_interpolator",
                        lambda *args, **kwargs: (lambda first, second, times: [0.5 * (first + second)]))


def test_every_sequence_that_cannot_be_used_is_named_with_a_count(tmp_path, capsys, monkeypatch):
    _average(monkeypatch)
    data = _middlebury(tmp_path / "data", 32, 48)
    _write_sequence(data / "Beta", ["frame10.png", "frame11.png"], [0.0, 1.0], 32, 48)  # no truth
    _write_sequence(data / "Gamma", ["frame10.png", "frame11.png", "frame10i11.png"], [0.0, 1.0, 0.5], 32, 48)
    (data / "Gamma" / "frame11.png").write_bytes(b"not a picture")
    _write_sequence(data / "Delta", ["frame10.png", "frame11.png", "frame10i11.png"], [0.0, 1.0, 0.5], 32, 48)
    iio.imwrite(data / "Delta" / "frame10i11.png", frame_at(0.5, 16, 16))
    assert main(["middlebury", str(data), "-q"]) == 0
    out = capsys.readouterr().out
    assert set(_table_rows(out)) == {"Seq", "mean"}
    assert out.splitlines()[-1] == (
        f"evaluated 1 of 4; Beta: no frame10i11.png; Delta: the frames differ in size; Gamma: cannot read "
        f"{data / 'Gamma' / 'frame11.png'} as an image (unknown format or damaged file)")


def test_limit_counts_the_samples_evaluated_not_those_skipped_and_reads_none_after_the_last(tmp_path, capsys,
                                                                                           monkeypatch):
    _average(monkeypatch)
    data = tmp_path / "data"
    for name in ("A_damaged", "B", "C_odd", "D", "E_damaged"):
        _write_sequence(data / name, ["frame10.png", "frame11.png", "frame10i11.png"], [0.0, 1.0, 0.5], 32, 48)
    for name in ("A_damaged", "E_damaged"):
        (data / name / "frame11.png").write_bytes(b"not a picture")
    iio.imwrite(data / "C_odd" / "frame10i11.png", frame_at(0.5, 16, 16))
    _write_sequence(data / "Beta", ["frame10.png", "frame11.png"], [0.0, 1.0], 32, 48)  # no truth: named by the finder
    assert main(["middlebury", str(data), "--limit", "2", "-q"]) == 0
    out = capsys.readouterr().out
    # Two samples evaluated; the two skipped on the way named; E, after the last, never read.
    assert set(_table_rows(out)) == {"B", "D", "mean"}
    assert out.splitlines()[-1] == (
        f"evaluated 2 of 5 (--limit 2); Beta: no frame10i11.png; A_damaged: cannot read "
        f"{data / 'A_damaged' / 'frame11.png'} as an image (unknown format or damaged file); C_odd: the frames differ "
        "in size")
    # A limit above what can be used evaluates all of it, and says nothing of the limit.
    assert main(["middlebury", str(data), "--limit", "9", "-q"]) == 0
    out = capsys.readouterr().out
    assert set(_table_rows(out)) == {"B", "D", "mean"}
    assert out.splitlines()[-1].startswith("evaluated 2 of 6; ")
    # Nor does a limit equal to the number of usable samples: it left nothing out.
    shutil.rmtree(data / "E_damaged")
    assert main(["middlebury", str(data), "--limit", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert set(_table_rows(out)) == {"B", "D", "mean"}
    assert out.splitlines()[-1].startswith("evaluated 2 of 5; ")


def test_help_says_what_limit_counts(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("--limit N evaluate the first N samples that can be used (N >= 1): those skipped on the way (named after "
            "the table) do not count") in text


def test_a_dataset_where_nothing_can_be_used_is_an_error_naming_why(tmp_path, capsys, monkeypatch):
    _average(monkeypatch)
    _write_sequence(tmp_path / "Beta", ["frame10.png", "frame11.png"], [0.0, 1.0], 32, 48)
    assert main(["middlebury", str(tmp_path), "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-eval: error: {tmp_path}: no sequence with frame10.png, frame11.png, "
                                       "frame10i11.png (Middlebury's layout) (Beta: no frame10i11.png)\n")


def test_a_vimeo_folder_missing_a_frame_is_named(tmp_path, capsys, monkeypatch):
    _average(monkeypatch)
    _write_sequence(tmp_path / "00001" / "0001", ["im1.png", "im2.png", "im3.png"], [0.0, 0.5, 1.0], 32, 48)
    _write_sequence(tmp_path / "00001" / "0002", ["im1.png", "im3.png"], [0.0, 1.0], 32, 48)
    assert main(["vimeo", str(tmp_path), "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"evaluated 1 of 2; {os.path.join('00001', '0002')}: no im2.png"


def test_sigterm_leaves_no_saved_files(tmp_path):
    data = _middlebury(tmp_path / "data", 32, 48)
    save = tmp_path / "saved"
    save.mkdir()  # empty: the run may use it, and leaves it as it was
    process = start_slow_program("evaluate", "middlebury", data, "--save", save, "-q", seconds=60)
    wait_until_interpolating(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert process.stderr.read() == "memc-eval: stopped by SIGTERM\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "saved"]
    assert list(save.iterdir()) == []


def test_save_into_a_folder_holding_files_is_refused_before_any_work_and_leaves_it_as_it_was(tmp_path, capsys,
                                                                                             no_model):
    data = _middlebury(tmp_path / "data", 32, 48)
    save = tmp_path / "saved"
    save.mkdir()
    (save / "Seq_ours.png").write_bytes(b"an earlier run's picture")
    assert main(["middlebury", str(data), "--save", str(save), "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-eval: error: --save {save} already holds files; choose a new or "
                                       "empty folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "saved"]
    assert [p.name for p in save.iterdir()] == ["Seq_ours.png"]
    assert (save / "Seq_ours.png").read_bytes() == b"an earlier run's picture"


def test_a_second_run_saving_into_the_folder_of_a_running_one_is_refused(tmp_path, capsys, no_model):
    data = _middlebury(tmp_path / "data", 32, 48)
    save = tmp_path / "saved"
    first = start_slow_program("evaluate", "middlebury", data, "--save", save, "-q", seconds=60)
    try:
        wait_until_interpolating(first)
        assert main(["middlebury", str(data), "--save", str(save), "-q"]) == 1
        assert capsys.readouterr().err == (f"memc-eval: error: {save}: another run is writing comparisons into it "
                                           f"(it holds {save}.lock); wait for it to finish or choose another folder\n")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------------------------------------
# memc-eval enhance


def _clips(root: pathlib.Path, names=("Alpha", "Beta"), count=3, height=32, width=48) -> pathlib.Path:
    """A folder of clips: each a folder of ``count`` clean frames of the moving photograph."""
    for offset, name in enumerate(names):
        _write_sequence(root / name, [f"frame{k}.png" for k in range(count)], [(k + offset) / 4 for k in range(count)],
                        height, width)
    return root


def _centre_unchanged(*args, **kwargs):
    """A build_enhancer whose method gives the centre frame back."""
    return lambda frames, centre: frames[centre]


def _method_rows(out: str):
    """{method: (PSNR, SSIM, s/frame)} from memc-eval enhance's table."""
    rows = {}
    for line in out.splitlines():
        parts = line.rsplit(None, 3)
        if len(parts) == 4:
            try:
                rows[parts[0].strip()] = (float(parts[1]), float(parts[2]) if parts[2] != "n/a" else math.nan,
                                          float(parts[3]))
            except ValueError:
                pass
    return rows


def test_enhance_denoise_prints_ours_the_noisy_input_and_the_peers(tmp_path, capsys):
    data = _clips(tmp_path / "data", names=("Alpha",))
    assert main(["enhance", str(data), "--task", "denoise", "--sigma", "20", "--device", "cpu", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("denoise: Gaussian noise of sigma 20 on 0..255 (given to every method that takes "
                                   "it), seed 0; ours: the training-free path on cpu; 1 window(s) from 1 clip(s)")
    rows = _method_rows(out)
    assert list(rows) == ["noisy input", "OpenCV NLM, 1 frame (h=12)", "OpenCV NLM multi-frame (h=12)", "ours"]
    assert rows["ours"][0] > rows["noisy input"][0] + 3 and rows["ours"][1] > rows["noisy input"][1]
    assert rows["OpenCV NLM, 1 frame (h=12)"][0] > rows["noisy input"][0]
    assert all(row[2] >= 0 for row in rows.values())


def test_enhance_noise_is_the_same_for_a_seed_and_differs_between_seeds(tmp_path, capsys, monkeypatch):
    from memc_models import enhancement_eval

    monkeypatch.setattr(evaluate_module, "build_enhancer", _centre_unchanged)
    monkeypatch.setattr(enhancement_eval, "nlm_denoise", lambda frames, centre, h, multi=True: frames[centre])
    data = _clips(tmp_path / "data", height=16, width=16)
    runs = []
    for seed in ("0", "0", "5"):
        assert main(["enhance", str(data), "--task", "denoise", "--seed", seed, "-q"]) == 0
        runs.append(_method_rows(capsys.readouterr().out)["noisy input"][:2])
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("task, extra, names", [
    ("sr", ["--scale", "2"], ["bicubic", "ours"]),
    ("deblock", ["--qp", "40"], ["H.264 QP 40 input", "ours"]),
])
def test_enhance_sr_and_deblock_print_ours_and_the_input(tmp_path, capsys, task, extra, names):
    data = _clips(tmp_path / "data", names=("Alpha",), height=24, width=32)
    assert main(["enhance", str(data / "Alpha"), "--task", task, *extra, "-q"]) == 0  # one clip: the folder itself
    rows = _method_rows(capsys.readouterr().out)
    assert list(rows) == names
    assert rows["ours"][0] > rows[names[0]][0]


def test_enhance_windows_of_a_long_clip_have_three_neighbours_a_side(tmp_path, capsys, monkeypatch):
    from memc_models import enhancement_eval

    seen = []
    monkeypatch.setattr(evaluate_module, "build_enhancer", lambda *args, **kwargs: (
        lambda frames, centre: seen.append((len(frames), centre)) or frames[centre]))
    monkeypatch.setattr(enhancement_eval, "nlm_denoise", lambda frames, centre, h, multi=True: frames[centre])
    data = _clips(tmp_path / "data", names=("Long",), count=9, height=16, width=16)
    assert main(["enhance", str(data), "--task", "denoise", "-q"]) == 0
    assert seen == [(7, 3), (7, 3), (7, 3)]  # frames 3, 4, 5 of 9
    seen.clear()
    assert main(["enhance", str(data), "--task", "denoise", "--windows", "2", "-q"]) == 0
    assert len(seen) == 2
    assert "2 window(s) from 1 clip(s)" in capsys.readouterr().out


def test_enhance_names_the_clips_it_cannot_use(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate_module, "build_enhancer", _centre_unchanged)
    data = _clips(tmp_path / "data", names=("Good",), height=16, width=16)
    _write_sequence(data / "Short", ["a.png", "b.png"], [0.0, 0.5], 16, 16)
    assert main(["enhance", str(data), "--task", "deblock", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "not evaluated: Short: holds 2 frame(s); a window needs at least 3"
    assert main(["enhance", str(data / "Short"), "--task", "deblock", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-eval: error: {data / 'Short'}: no folder of at least 3 frames (a clip, "
                                       "or a folder of clips) (Short: holds 2 frame(s); a window needs at least 3)\n")


@pytest.mark.parametrize("arguments, message", [
    (["enhance", "{data}"], "--task must be one of denoise, deblock, sr; got nothing"),
    (["enhance", "{data}", "--task", "blur"], "--task must be one of denoise, deblock, sr; got 'blur'"),
    (["enhance", "{data}", "--task", "sr", "--sigma", "10"],
     "--sigma applies to --task denoise (the noise's standard deviation); got --task sr"),
    (["enhance", "{data}", "--task", "denoise", "--sigma", "-1"],
     "--sigma must be a number from 0 to 255 (the noise's standard deviation on 0..255); got -1"),
    (["enhance", "{data}", "--task", "sr", "--scale", "3"], "--scale must be 2 or 4; got 3"),
    (["enhance", "{data}", "--task", "deblock", "--qp", "60"],
     "--qp must be a whole number from 0 to 51 (the H.264 quantiser); got 60"),
    (["enhance", "{data}", "--task", "denoise", "--qp", "30"],
     "--qp applies to --task deblock (the H.264 quantiser); got --task denoise"),
    (["enhance", "{data}", "--task", "sr", "--strength", "6"],
     "--strength applies to --task deblock (the artefacts' level treated as noise); got --task sr"),
    (["middlebury", "{data}", "--strength", "6"],
     "--strength applies to memc-eval enhance; memc-eval middlebury evaluates interpolation"),
    (["vimeo", "{data}", "--seed", "3"],
     "--seed applies to memc-eval enhance; memc-eval vimeo evaluates interpolation"),
    (["enhance", "{data}", "--task", "denoise", "--model", "memc_s"],
     "--model applies to the interpolation datasets, not to memc-eval enhance"),
    (["enhance", "{data}/Alpha/frame0.png", "--task", "denoise"],
     "{data}/Alpha/frame0.png is a file; memc-eval enhance takes a folder of frames, or a folder of such folders"),
    (["enhance", "{data}/absent", "--task", "denoise"], "{data}/absent: no such folder"),
    (["middlebury", "{data}", "--task", "denoise"],
     "--task applies to memc-eval enhance; memc-eval middlebury evaluates interpolation"),
])
def test_enhance_bad_options_are_one_line_errors_before_any_work(tmp_path, capsys, monkeypatch, arguments, message):
    def refuse(*args, **kwargs):
        raise AssertionError("memc-eval built a method before rejecting its arguments")
    monkeypatch.setattr(evaluate_module, "build_enhancer", refuse)
    monkeypatch.setattr(evaluate_module, "build_interpolator", refuse)
    data = _clips(tmp_path / "data", names=("Alpha",), height=16, width=16)
    assert main([argument.format(data=data) for argument in arguments]) == 1
    assert capsys.readouterr().err == f"memc-eval: error: {message.format(data=data)}\n"


def test_enhance_with_a_checkpoint_scores_the_model_as_ours(tmp_path, capsys, monkeypatch):
    from memc_models import inference

    class CentreFrame(torch.nn.Module):
        def forward(self, frames, centre):
            return frames[:, centre]

    monkeypatch.setattr(inference, "load_enhancement_model", lambda path, device: CentreFrame())
    data = _clips(tmp_path / "data", names=("Alpha",), height=16, width=16)
    checkpoint = tmp_path / "MEMC-Net_DB.pth"
    assert main(["enhance", str(data), "--task", "deblock", "--checkpoint", str(checkpoint), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"ours: MEMC-Net_VE ({checkpoint}) on cpu" in out.splitlines()[0]
    rows = _method_rows(out)
    assert list(rows) == ["H.264 QP 37 input", "ours (MEMC-Net_VE)"]
    assert rows["ours (MEMC-Net_VE)"][:2] == rows["H.264 QP 37 input"][:2]  # the model gave the input back


def test_enhance_limit_counts_the_clips_evaluated_not_those_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate_module, "build_enhancer", _centre_unchanged)
    data = _clips(tmp_path / "data", names=("Alpha", "Beta", "Gamma", "Omega"), height=16, width=16)
    for name in ("Alpha", "Omega"):
        (data / name / "frame2.png").write_bytes(b"not a picture")
    assert main(["enhance", str(data), "--task", "deblock", "--limit", "2", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "; 2 window(s) from 2 clip(s)" in lines[0]  # Beta and Gamma, one window each
    assert lines[-1] == (f"not evaluated: Alpha: cannot read {data / 'Alpha' / 'frame2.png'} as an image (unknown "
                         "format or damaged file)")  # Omega, after the last, never read


def test_enhance_half_reaches_a_checkpoint_model_and_is_noted_without_one(tmp_path, capsys, monkeypatch):
    built = []

    def build(device, task, checkpoint=None, **options):
        built.append((checkpoint, options["half"]))
        return _centre_unchanged()

    monkeypatch.setattr(evaluate_module, "build_enhancer", build)
    data = _clips(tmp_path / "data", names=("Alpha",), height=16, width=16)
    checkpoint = str(tmp_path / "MEMC-Net_DB.pth")
    assert main(["enhance", str(data), "--task", "deblock", "--half", "--checkpoint", checkpoint]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["enhance", str(data), "--task", "deblock", "--half"]) == 0
    assert "note: --half applies to MEMC-Net models; the default path runs in float32\n" in capsys.readouterr().err
    assert built == [(checkpoint, True), (None, True)]


def test_enhance_where_no_window_can_be_read_is_an_error_naming_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate_module, "build_enhancer", _centre_unchanged)
    data = _clips(tmp_path / "data", names=("Only",), height=16, width=16)
    (data / "Only" / "frame2.png").write_bytes(b"not a picture")
    assert main(["enhance", str(data), "--task", "deblock", "-q"]) == 1
    assert capsys.readouterr().err == (f"memc-eval: error: {data}: no window could be evaluated: Only: cannot read "
                                       f"{data / 'Only' / 'frame2.png'} as an image (unknown format or damaged file)\n")
