"""The FFmpeg program the library runs (the one imageio-ffmpeg ships) and how its log lines read
in our messages."""

import re

__all__ = ["ffmpeg_exe", "without_address"]


def ffmpeg_exe() -> str:
    """The FFmpeg executable (imageio-ffmpeg's; ``IMAGEIO_FFMPEG_EXE`` picks another)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def without_address(line: str) -> str:
    """An FFmpeg log line without the address of the object that wrote it: '[h264 @ 0x55d0c2a4]
    error while decoding' as 'h264: error while decoding' (also '[in#0/mov,mp4 @ 0x...]')."""
    return re.sub(r"^\[([\w/#:,]+) @ 0x[0-9a-f]+\]\s*", r"\1: ", line.strip())
