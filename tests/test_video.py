"""Video files (memc_models.video): what the writer writes the reader reads back (frame rates of
1000 and more included), audio, and the errors a failing encoder or a damaged file give."""

import pytest

from helpers import clip_with_audio, frame_at
from memc_models.video import VideoReader, VideoWriter, add_audio, has_audio, parse_rate, probe


def _write(path, count, fps=10, height=32, width=48):
    with VideoWriter(str(path), (width, height), fps) as writer:
        for k in range(count):
            writer.write(frame_at(k / 4, height, width))
        writer.close()


def test_add_audio_reencodes_what_the_container_cannot_hold_and_reports_failure(tmp_path):
    clip = clip_with_audio(tmp_path)  # AAC audio: WebM takes only Opus or Vorbis, so it is re-encoded
    video = tmp_path / "video.webm"
    _write(video, 6)
    assert add_audio(str(video), str(clip)) is None and has_audio(str(video))
    before = video.read_bytes()
    not_media = tmp_path / "notes.txt"
    not_media.write_text("no audio here")
    assert add_audio(str(video), str(not_media))  # a reason, and the video as it was
    assert video.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "silent.mp4", "video.webm", "with_audio.mp4"]


@pytest.mark.parametrize("fps", [10, 29.97, 1000, 2000, 1500])
def test_frame_rates_read_back_as_written(tmp_path, fps):
    # FFmpeg prints 1000 fps as "1k fps": read as what it means, not as no frame rate.
    clip = tmp_path / "clip.mkv"
    _write(clip, 3, fps)
    info = probe(str(clip))
    assert info.fps == pytest.approx(fps) and info.size == (48, 32)
    reader = VideoReader(str(clip))
    assert reader.fps == pytest.approx(fps) and sum(1 for _ in reader) == 3


def test_rates_as_ffmpeg_prints_them():
    assert [parse_rate(text) for text in ("25", "29.97", "1k", "2k", "1500", "x")] == [25, 29.97, 1000, 2000, 1500, None]
