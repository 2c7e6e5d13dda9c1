"""The FFmpeg program (memc_models.ffmpeg): which one runs, and its log lines as messages quote them."""

import os

import pytest

from memc_models.ffmpeg import ffmpeg_exe, without_address


@pytest.mark.parametrize("line, expected", [
    ("[mjpeg @ 0x55d0c2a4] error count: 69", "mjpeg: error count: 69"),
    ("  [h264 @ 0x7f00ab12] error while decoding MB 3 4\n", "h264: error while decoding MB 3 4"),
    ("[in#0/mov,mp4,m4a,3gp,3g2,mj2 @ 0x5603e] moov atom not found", "in#0/mov,mp4,m4a,3gp,3g2,mj2: moov atom not found"),
    ("Conversion failed!", "Conversion failed!"),
])
def test_without_address_keeps_who_wrote_a_line_and_what_it_says(line, expected):
    assert without_address(line) == expected


def test_ffmpeg_exe_is_imageio_ffmpegs_unless_the_environment_names_another(monkeypatch):
    assert os.access(ffmpeg_exe(), os.X_OK)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "/usr/bin/true")
    assert ffmpeg_exe() == "/usr/bin/true"
