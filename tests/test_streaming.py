"""The pairwise walk (memc_models.streaming): sources, sinks, scene cuts and sliding windows."""

import threading
import time

import numpy as np
import pytest
import torch

from helpers import frame_at, iio, other_shot, to_tensor
from memc_models.errors import UserError
from memc_models.streaming import (SCENE_THRESHOLD, FolderSink, FolderSource, Staged, StreamFrame, VideoSink,
                                   VideoSource, centred_windows, colour_overlap, interpolate_stream, windows)


def average(frame0, frame1, times):
    return [(1 - t) * frame0 + t * frame1 for t in times]


def _folder(path, count, height=32, width=48, extension=".png"):
    path.mkdir()
    for k in range(count):
        iio.imwrite(path / f"f{k}{extension}", frame_at(k / 4, height, width))
    return path


def test_colour_overlap_is_high_within_a_shot_and_low_across_a_cut():
    shot = [to_tensor(frame_at(t, 48, 64)) for t in (0.0, 0.5, 1.0)]
    other = to_tensor(other_shot())
    assert colour_overlap(shot[0], shot[0]) == pytest.approx(1.0)
    assert min(colour_overlap(a, b) for a, b in zip(shot, shot[1:])) > 0.9
    assert colour_overlap(shot[2], other) < SCENE_THRESHOLD
    assert colour_overlap(shot[2], other) == pytest.approx(colour_overlap(other, shot[2]))


def test_folder_to_folder_writes_each_input_and_the_frames_between_in_order(tmp_path):
    source = FolderSource(str(_folder(tmp_path / "in", 3)))
    out = tmp_path / "out"
    with FolderSink(str(out), 7, source.extension, source.bits) as sink:
        result = interpolate_stream(source, sink, average, [1 / 3, 2 / 3])
        assert not out.exists()  # written under a temporary name until complete
    assert (result.frames_read, result.frames_written, result.cuts) == (3, 7, [])
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{k:05d}.png" for k in range(7)]
    assert (out / "00003.png").read_bytes() == (tmp_path / "in" / "f1.png").read_bytes()  # copied unchanged
    expected = average(to_tensor(frame_at(0.0, 32, 48)), to_tensor(frame_at(0.25, 32, 48)), [1 / 3])[0]
    assert (to_tensor(iio.imread(out / "00001.png")) - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_a_scene_cut_repeats_the_nearest_frame_and_is_reported(tmp_path):
    folder = _folder(tmp_path / "in", 2)
    iio.imwrite(folder / "f2.png", other_shot(32, 48))
    source = FolderSource(str(folder))
    with FolderSink(str(tmp_path / "out"), 7, ".png") as sink:
        result = interpolate_stream(source, sink, average, [1 / 3, 2 / 3])
    assert result.cuts == [2]
    out = tmp_path / "out"
    assert (out / "00004.png").read_bytes() == (out / "00003.png").read_bytes()  # t = 1/3: the earlier frame
    assert np.array_equal(iio.imread(out / "00005.png"), iio.imread(folder / "f2.png"))


def test_a_failed_stream_leaves_no_folder(tmp_path):
    source = FolderSource(str(_folder(tmp_path / "in", 3)))

    def fails(frame0, frame1, times):
        raise UserError("no more")

    with pytest.raises(UserError, match="no more"):
        with FolderSink(str(tmp_path / "out"), 5, ".png") as sink:
            interpolate_stream(source, sink, fails, [0.5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_windows_slide_one_frame_at_a_time_and_refuse_a_frame_of_another_size(tmp_path):
    frames = list(FolderSource(str(_folder(tmp_path / "in", 5))))
    assert [[f.index for f in window] for window in windows(frames, 3)] == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    odd = frames[2]._replace(image=torch.zeros(1, 3, 8, 8), name="odd.png")
    with pytest.raises(UserError, match="the frames differ in size: odd.png is 8x8"):
        list(windows([frames[0], frames[1], odd], 2))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_centred_windows_give_every_frame_once_with_its_neighbours_and_fewer_at_the_ends(count):
    frames = [StreamFrame(torch.full((1, 3, 4, 4), k / 10), k, f"f{k}") for k in range(count)]
    seen = [([f.index for f in window], centre) for window, centre in centred_windows(iter(frames), 7)]
    assert [window[centre] for window, centre in seen] == list(range(count))  # each frame once, in order
    for window, centre in seen:
        k = window[centre]
        assert window == list(range(max(0, k - 3), min(count, k + 4)))


def test_centred_windows_refuse_an_even_size_and_a_frame_of_another_size():
    frames = [StreamFrame(torch.zeros(1, 3, 4, 4), k, f"f{k}") for k in range(3)]
    with pytest.raises(ValueError, match="size must be an odd number"):
        list(centred_windows(frames, 4))
    odd = frames[2]._replace(image=torch.zeros(1, 3, 8, 8), name="odd.png")
    with pytest.raises(UserError, match="the frames differ in size: odd.png is 8x8"):
        list(centred_windows([frames[0], frames[1], odd], 3))


def test_video_to_video_keeps_the_rate_times_the_factor(tmp_path):
    clip = tmp_path / "clip.mp4"
    with VideoSink(str(clip), 25) as sink:
        for k in range(4):
            sink.write(to_tensor(frame_at(k / 4, 32, 48)))
    source = VideoSource(str(clip))
    assert (source.fps, source.size, source.count) == (25, (48, 32), 4)
    with VideoSink(str(tmp_path / "out.mkv"), source.fps * 3) as sink:
        result = interpolate_stream(source, sink, average, [1 / 3, 2 / 3])
    out = VideoSource(str(tmp_path / "out.mkv"))
    assert (out.fps, out.count, result.frames_written) == (75, 10, 10)


# ---------------------------------------------------------------------------------------------
# The pipeline (interpolate_stream(..., pipelined=True)): same frames, one error, bounded, stoppable


class ListSink:
    """A sink that keeps what it is given (image, source frame or None)."""

    def __init__(self):
        self.written = []

    def write(self, image, source=None):
        self.written.append((image, source))


def _frames(count, height=24, width=32, cut_at=None):
    images = [other_shot(height, width) if k == cut_at else frame_at(k / 4, height, width) for k in range(count)]
    return [StreamFrame(to_tensor(pixels), k, f"frame {k}") for k, pixels in enumerate(images)]


def _classical_stages():
    from memc_models.classical import ClassicalConfig, ClassicalInterpolator

    path = ClassicalInterpolator(ClassicalConfig(orientations=2))
    return Staged(path.motion, path.render)


@pytest.mark.parametrize("interpolator", ["staged", "plain"])
def test_the_pipeline_writes_the_sequential_walks_frames_bit_for_bit(interpolator):
    stages = _classical_stages()
    interpolate = stages if interpolator == "staged" else (lambda frame0, frame1, times: stages(frame0, frame1, times))
    frames = _frames(6, cut_at=4)
    results, sinks = [], []
    for pipelined in (False, True):
        sinks.append(ListSink())
        results.append(interpolate_stream(iter(frames), sinks[-1], interpolate, [0.25, 0.5, 0.75], pipelined=pipelined))
    assert results[0] == results[1] and results[1].cuts == [4, 5]
    assert len(sinks[1].written) == 6 + 5 * 3
    for (image, source), (expected, expected_source) in zip(sinks[1].written, sinks[0].written):
        assert torch.equal(image, expected) and source == expected_source


def test_the_pipeline_counts_each_frame_written_once():
    calls = []
    result = interpolate_stream(iter(_frames(4)), ListSink(), average, [1 / 3, 2 / 3], on_frame=lambda: calls.append(1),
                                pipelined=True)
    assert (result.frames_read, result.frames_written, len(calls)) == (4, 10, 10)


def _failing_source(frames, at):
    for frame in frames:
        if frame.index == at:
            raise UserError(f"frame {frame.index}: cannot decode it")
        yield frame


def _failing_motion(at):
    calls = []

    def motion(frame0, frame1):
        calls.append(1)
        if len(calls) == at:
            raise UserError("the motion failed")
        return None
    return Staged(motion, lambda frame0, frame1, motion, times: average(frame0, frame1, times))


@pytest.mark.parametrize("stage, message", [("decode", "frame 3: cannot decode it"), ("motion", "the motion failed"),
                                            ("render", "the rendering failed"), ("encode", "the encoder failed")])
@pytest.mark.parametrize("pipelined", [False, True])
def test_a_failing_stage_is_raised_once_and_leaves_no_folder(tmp_path, stage, message, pipelined):
    frames = list(FolderSource(str(_folder(tmp_path / "in", 5))))
    source = _failing_source(frames, 3) if stage == "decode" else iter(frames)
    interpolate = _failing_motion(2) if stage == "motion" else average
    out = tmp_path / "out"

    class FailingSink(FolderSink):
        def write(self, image, source=None):
            if stage == "encode" and self.frames_written == 4:
                raise UserError("the encoder failed")
            super().write(image, source)

    def render_frames(frame0, frame1, times):  # fails on the second pair
        if torch.equal(frame0, frames[1].image):
            raise UserError("the rendering failed")
        return average(frame0, frame1, times)

    if stage == "render":
        interpolate = render_frames
    with pytest.raises(UserError, match=f"^{message}$"):
        with FailingSink(str(out), 9, ".png") as sink:
            interpolate_stream(source, sink, interpolate, [0.5], pipelined=pipelined)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("memc-")]


def test_the_pipeline_reads_only_a_few_frames_ahead_of_the_rendering():
    pulled = []

    def source():
        for frame in _frames(30, 8, 8):
            pulled.append(frame.index)
            yield frame

    ahead = []

    def slow(frame0, frame1, times):
        time.sleep(0.05)  # the reader has time to run ahead, as far as the queues let it
        ahead.append(len(pulled) - 1 - len(ahead))
        return average(frame0, frame1, times)

    interpolate_stream(source(), ListSink(), slow, [0.5], scene_threshold=0, pipelined=True)
    assert len(pulled) == 30 and max(ahead) <= 4


def test_an_interruption_stops_the_pipeline_at_once_even_with_the_motion_stage_busy():
    started = threading.Event()

    def motion(frame0, frame1):
        if started.is_set():
            time.sleep(30)  # a long computation in the reading thread that cannot be interrupted
        started.set()

    def render(frame0, frame1, motion, times):
        started.wait(5)
        raise KeyboardInterrupt

    sink = ListSink()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interpolate_stream(iter(_frames(4)), sink, Staged(motion, render), [0.5], pipelined=True)
    assert time.monotonic() - start < 10
    assert [source.index for _, source in sink.written if source is not None] in ([], [0])  # nothing after
