"""Helpers shared by several test files (imported as ``from helpers import ...``; never import
one test file from another): frames of a real photograph under a known motion, small videos and
Vimeo90K-style triplets written with other writers than ours, and running the programs."""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import memc_models

cv2 = pytest.importorskip("cv2")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
iio = pytest.importorskip("imageio.v3")

#: The size of the photograph's frames unless a test asks for another.
HEIGHT, WIDTH = 96, 128
#: Training triplets: 32x64 frames, the scene moving down 1 and right 2 pixels each frame.
TRIPLET_HEIGHT, TRIPLET_WIDTH = 32, 64
SHIFT = (1, 2)


def photo() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()  # 512 x 512 RGB


def frame_at(t: float, height: int = HEIGHT, width: int = WIDTH, speed: float = 1.0) -> np.ndarray:
    """The photograph at time t under a smooth motion: a rotation about a point off the frame, a
    zoom and a translation growing linearly with t (every pixel moves differently, up to ~8 px
    between t = 0 and 1)."""
    picture = photo()
    angle, zoom, shift = 3.0 * t * speed, 1.0 + 0.04 * t * speed, (7.0 * t * speed, -4.0 * t * speed)
    matrix = cv2.getRotationMatrix2D((180.0, 140.0), angle, zoom)
    matrix[:, 2] += shift
    # Sample the middle of the photograph at a quarter of its size (anti-aliased first).
    small = cv2.resize(picture, (256, 256), interpolation=cv2.INTER_AREA)
    moved = cv2.warpAffine(small, matrix, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    top, left = (256 - height) // 2, (256 - width) // 2
    return moved[top : top + height, left : left + width]


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def write_images(tmp_path, *frames):
    paths = []
    for k, frame in enumerate(frames):
        path = tmp_path / f"frame{k}.png"
        iio.imwrite(path, frame)
        paths.append(str(path))
    return paths


def write_clip(path, count, height=48, width=64):
    codec = "libvpx-vp9" if str(path).endswith(".webm") else "libx264"
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=10, macro_block_size=1, codec=codec,
                                         pix_fmt_out="yuv444p", ffmpeg_log_level="error")
    writer.send(None)
    for k in range(count):
        writer.send(np.ascontiguousarray(frame_at(k / 4, height, width)))
    writer.close()


def video_info(path):
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    return meta, sum(1 for _ in frames)


def ffmpeg(*arguments):
    """Runs the FFmpeg that imageio-ffmpeg ships (overwriting, quiet but for errors)."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, arguments)], check=True)


def variable_rate_clip(tmp_path):
    """12 frames of the moving photograph, 8 at 10 fps and then one a second (announced as 10 fps,
    lasting 4.8 s)."""
    clip = tmp_path / "clip.mkv"
    write_clip(clip, 12, 32, 48)
    variable = tmp_path / "variable.mkv"
    ffmpeg("-i", clip, "-vf", "setpts='if(lt(N,8),N/10/TB,(1+(N-8))/TB)'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-pix_fmt", "yuv444p", variable)
    return variable


def clip_with_audio(tmp_path, frames=6):
    silent = tmp_path / "silent.mp4"
    write_clip(silent, frames, 32, 48)
    clip = tmp_path / "with_audio.mp4"
    ffmpeg("-i", silent, "-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / 10}", "-c:v", "copy",
            "-c:a", "aac", "-shortest", clip)
    return clip


def other_shot(height=48, width=64) -> np.ndarray:
    """A frame of another shot: a different photograph."""
    skdata = pytest.importorskip("skimage.data")
    return cv2.resize(skdata.coffee(), (width, height), interpolation=cv2.INTER_AREA)


def write_sixteen_bit(path, pixels):
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels[..., ::-1]))


def sixteen_bit_frame(t, height=48, width=64):
    """The moving photograph at time t with 16-bit samples (low bytes that 8 bits would lose)."""
    frame = cv2.resize(frame_at(t, height // 2, width // 2), (width, height), interpolation=cv2.INTER_CUBIC)
    return (frame.astype(np.uint16) * 257 + np.uint16(123))


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def pil():
    return pytest.importorskip("PIL.Image")


def png_with_exif(png: bytes, exif: bytes) -> bytes:
    """A PNG file's bytes with an eXIf chunk (EXIF data starting at its byte-order mark) after IHDR."""
    import struct
    import zlib

    chunk = b"eXIf" + exif
    exif_chunk = struct.pack(">I", len(exif)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    return png[:end_of_header] + exif_chunk + png[end_of_header:]


def write_triplet(folder, seed, height=TRIPLET_HEIGHT, width=TRIPLET_WIDTH):
    """im1, im2, im3: windows of one random picture moved by SHIFT per frame."""
    rng = np.random.default_rng(seed)
    picture = rng.integers(0, 256, size=(height + 8, width + 8, 3), dtype=np.uint8)
    os.makedirs(folder, exist_ok=True)
    for k in range(3):
        top, left = 4 - (k - 1) * SHIFT[0], 4 - (k - 1) * SHIFT[1]
        iio.imwrite(os.path.join(folder, f"im{k + 1}.png"), picture[top : top + height, left : left + width])


def run_program(module: str, *args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m module args...`` in a fresh process (stdout and stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def assert_one_line_error(stderr: str, *words) -> None:
    """stderr is one line, an error without a traceback, naming every one of ``words``."""
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "error:" in stderr, stderr
    for word in words:
        assert str(word) in stderr, stderr


#: Put first in a program that a test starts and then stops with a signal: SIGINT, SIGTERM and
#: SIGHUP as a program started from a terminal has them, whatever this test run inherited (a
#: background job of a non-interactive shell ignores SIGINT, nohup ignores SIGHUP; the programs
#: leave a stop signal they were started ignoring ignored).
STOP_SIGNALS_AS_FROM_A_TERMINAL = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
"""

#: A program run in a fresh process whose method (what ``{builder}`` builds: an interpolator by
#: default) first prints a line ("interpolating") and then sleeps, or waits until the file named by
#: SLOW_UNTIL exists, before giving ``{result}``: a test knows the run is under way and has time to
#: stop it, or to start another beside it. It sleeps in short steps, as real work returns to the
#: interpreter often: Python runs a signal's handler between bytecodes, so a signal that arrives
#: just before one long sleep begins would wait for its end.
SLOW_PROGRAM = STOP_SIGNALS_AS_FROM_A_TERMINAL + """
import os, sys, time
from memc_models.cli import {program} as program

def slow(*args, **kwargs):
    def method(*inputs):
        print("interpolating", flush=True)
        until = os.environ.get("SLOW_UNTIL")
        deadline = time.monotonic() + 300
        while until and not os.path.exists(until) and time.monotonic() < deadline:
            time.sleep(0.05)
        end = time.monotonic() + {seconds}
        while time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return ({result})(*inputs)
    return method

program.{builder} = slow
sys.exit(program.main(sys.argv[1:]))
"""

#: What the slow interpolator gives: the frames blended at each time.
BLEND = "lambda frame0, frame1, times: [(1 - t) * frame0 + t * frame1 for t in times]"
#: What a slow enhancer (``builder="build_enhancer"``) gives: the window's centre frame as it is.
CENTRE_FRAME = "lambda frames, centre: frames[centre]"


def start_slow_program(program: str, *args, seconds: float = 0.5, until=None, builder: str = "build_interpolator",
                       result: str = BLEND) -> subprocess.Popen:
    """Starts ``memc_models.cli.<program>`` with its ``builder`` replaced by the slow method above
    (each call waits ``seconds``, and first until the file ``until`` exists if given, then returns
    what the expression ``result`` gives for its arguments); stdout and stderr are pipes."""
    script = SLOW_PROGRAM.format(program=program, seconds=seconds, builder=builder, result=result)
    environment = dict(os.environ, SLOW_UNTIL=str(until)) if until else None
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def wait_until_interpolating(process: subprocess.Popen) -> None:
    """Reads the process's stdout up to its first "interpolating" line."""
    for line in process.stdout:
        if line.strip() == "interpolating":
            return
    raise AssertionError(f"the program ended before interpolating: {process.wait()} {process.stderr.read()}")


def full_disk(monkeypatch, when=lambda path: True, after_bytes: int = 0) -> None:
    """Fakes a full disk in the one writer (memc_models.atomic.write_chunk): writes into files whose
    path satisfies ``when`` fail with ENOSPC once ``after_bytes`` bytes have gone into them."""
    import errno

    from memc_models import atomic

    real, written = atomic.write_chunk, {}

    def write_chunk(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if when(path):
            if written.get(path, 0) + len(data) > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[path] = written.get(path, 0) + len(data)
        return real(fd, data)

    monkeypatch.setattr(atomic, "write_chunk", write_chunk)


#: Every entry, with its shape, of the released MEMC-Net models' state dicts, and their parameter
#: counts (data/original_state_dict_shapes.json, read by instantiating the released models).
MANIFEST = json.loads((Path(__file__).parent / "data" / "original_state_dict_shapes.json").read_text())["models"]
#: Our factory for each released variant name.
FACTORIES = {"MEMC_Net": memc_models.memc_net, "MEMC_Net_s": memc_models.memc_net_s,
             "MEMC_Net_star": memc_models.memc_net_star}
RELEASED_VARIANTS = list(FACTORIES)


def assert_converter_places_every_released_entry(variant, factory, manifest=MANIFEST) -> None:
    """The released ``variant``'s entries (``manifest[variant]``'s names and shapes, on the meta
    device) convert, every one, onto an entry of ``factory()``'s state dict of the same shape, and
    cover all of it."""
    from memc_models import convert_original_state_dict

    released = {name: torch.empty(shape, device="meta") for name, shape in manifest[variant]["state_dict"].items()}
    converted, unplaced = convert_original_state_dict(released, variant)
    with torch.device("meta"):
        ours = factory().state_dict()
    assert unplaced == []
    assert sorted(converted) == sorted(ours)
    for name, value in converted.items():
        assert value.shape == ours[name].shape, name


def random_original_state_dict(variant, seed=0, manifest=MANIFEST):
    """Random tensors under the released names and shapes (``manifest[variant]``), scaled like
    trained weights (so that activations neither vanish nor explode through the deep networks)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, shape in manifest[variant]["state_dict"].items():
        if name.endswith("num_batches_tracked"):
            state_dict[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state_dict[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith("running_mean"):
            state_dict[name] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state_dict[name] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        elif name.endswith("weight"):  # batch-norm scale
            state_dict[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state_dict[name] = 0.01 * torch.randn(shape, generator=generator)
    return state_dict


def shifted_frames(batch, height, width, seed=0, device="cpu"):
    """Two frames with a shared texture shifted by a few pixels, values in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, height + 8, width + 8, generator=generator)
    base = torch.nn.functional.avg_pool2d(base, 3, 1, 1)
    return base[..., 2 : 2 + height, 3 : 3 + width].to(device), base[..., 5 : 5 + height, 1 : 1 + width].to(device)


#: Training septuplets: 12x16 frames.
SEPTUPLET_HEIGHT, SEPTUPLET_WIDTH = 12, 16


def write_septuplet(folder, base, height=SEPTUPLET_HEIGHT, width=SEPTUPLET_WIDTH):
    """im1 .. im7, frame n a flat grey of level base + 10 n (so that a frame tells which it is),
    with one white pixel in the top-left corner (so that flips show)."""
    os.makedirs(folder, exist_ok=True)
    for n in range(7):
        image = np.full((height, width, 3), base + 10 * n, dtype=np.uint8)
        image[0, 0] = 255
        iio.imwrite(os.path.join(folder, f"im{n + 1}.png"), image)


def free_port() -> int:
    """A TCP port nothing listens on now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _sigint_as_torchrun_passes_it_on():
    """While it lasts, this process handles SIGINT in Python and does not block it, so that the
    processes it starts begin with SIGINT's default disposition, unblocked, whatever this process
    inherited: as torchrun's workers begin (its agent handles SIGINT, and forwards it to them).

    A test run started with SIGINT ignored (a background job of a non-interactive shell, e.g.
    ``.ci/run &``) would otherwise pass the ignoring on: Python then installs no KeyboardInterrupt
    handler in the workers, and the SIGINT a test sends them does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if previous is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signal.SIGINT, previous)


def start_processes(world_size: int, command, **popen) -> list:
    """``world_size`` processes of ``command`` (a list), each with the environment torchrun gives
    its processes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and, as torchrun's,
    SIGINT at its default disposition; stdout and stderr captured as text. Without torchrun
    itself: nothing stops the others when one fails, which is what memc_models.distributed must do."""
    port = free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    processes = []
    with _sigint_as_torchrun_passes_it_on():
        for rank in range(world_size):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", PYTHONPATH=root)
            processes.append(subprocess.Popen(list(map(str, command)), cwd=root, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, **popen))
    return processes


def finish_processes(processes, limit: float) -> list:
    """(exit status, stderr) of each process; fails the test (killing them) if any outlives
    ``limit`` seconds."""
    import time

    deadline = time.monotonic() + limit
    results = []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, stderr))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the processes did not finish within {limit} s")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results
