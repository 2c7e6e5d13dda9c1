"""``memc-interpolate``: frames between two images, or a video at N times its frame rate.

    memc-interpolate A.png B.png -o MID.png                 # the frame at t = 0.5
    memc-interpolate A.png B.png -o OUT.png --factor 4      # OUT_t0.250.png, OUT_t0.500.png, ...
    memc-interpolate IN.mp4 -o OUT.mp4 --factor 2           # twice the frame rate
    memc-interpolate IN.mp4 -o OUT.mp4 --checkpoint memc_star.pth --model memc_star
    memc-interpolate FRAMES/ -o OUT/ --factor 2             # a folder of frames: OUT/00000.png, ...

Without ``--checkpoint`` the training-free path of :mod:`memc_models.classical` runs (nothing to
download); with one, a MEMC-Net model (ours, saved with ``torch.save(model.state_dict())``, or
a checkpoint released by the authors).
"""

import argparse
import contextlib
import math
import os
import sys
import time
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .io import (IMAGE_EXTENSIONS, SIXTEEN_BIT_EXTENSIONS, UserError, VideoReader, VideoWriter, check_image_output,
                 check_output, copy_image, check_video_output, has_audio, image_size, list_frames, read_image, stored_as_written,
                 stored_bits, to_uint8, write_image)

__all__ = ["Interpolator", "build_interpolator", "colour_overlap", "frame_times", "main", "pick_device"]

#: --model choices -> (factory name in memc_models, the released code's variant name)
MODELS = {"memc": ("memc_net", "MEMC_Net"), "memc_s": ("memc_net_s", "MEMC_Net_s"), "memc_star": ("memc_net_star", "MEMC_Net_star")}

#: Interpolates (1, 3, H, W) frames in [0, 1] at several times in (0, 1).
Interpolator = Callable[[Tensor, Tensor, Sequence[float]], List[Tensor]]


def pick_device(name: str) -> torch.device:
    import memc_ops

    cuda_ok = torch.cuda.is_available() and memc_ops.cuda_kernels_built()
    if name == "auto":
        return torch.device("cuda" if cuda_ok else "cpu")
    if name == "cuda" and not cuda_ok:
        why = "no CUDA GPU is visible" if not torch.cuda.is_available() else "memc_ops was built without CUDA kernels"
        raise UserError(f"--device cuda: {why}; use --device cpu")
    return torch.device(name)


def frame_times(times: Optional[Sequence[float]], factor: Optional[int]) -> List[float]:
    """The times to interpolate: ``times`` as given, or k / factor for k = 1 .. factor - 1."""
    if factor is not None:
        if factor < 2:
            raise UserError(f"--factor must be an integer of at least 2; got {factor}")
        return [k / factor for k in range(1, factor)]
    times = list(times) if times else [0.5]
    for t in times:
        if not 0.0 < t < 1.0:
            raise UserError(f"--times must lie strictly between 0 and 1; got {t}")
        if times.count(t) > 1:
            raise UserError(f"--times lists {t} more than once")
    return times


def load_model(path: str, model_name: str, device: torch.device, option: str = "--checkpoint"):
    """The MEMC-Net variant `model_name` (a --model name) with the weights at `path`, in eval mode
    on `device`. The file holds our state dict (torch.save(model.state_dict())), a memc-train
    last.pt (its "model" entry), or the authors' release. A UserError beginning with `option`, the
    command-line option that named the file, says what is wrong with it."""
    import memc_models
    from memc_models.checkpoint import compare_state_dict, is_training_state, read_checkpoint

    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a folder; expected a checkpoint file (such as best.pt or last.pt in it)")
    if not os.path.isfile(path):
        raise UserError(f"{option} {path}: no such file")
    try:
        state = read_checkpoint(path)
    except ValueError as error:
        raise UserError(f"{option} {error}") from None
    except OSError as error:
        raise UserError(f"{option} {path}: cannot read it ({error.strerror or error})") from None
    if is_training_state(state):
        config = state.get("config")
        trained = config.get("model") if isinstance(config, dict) else None
        if trained in MODELS and trained != model_name:
            raise UserError(f"{option} {path} is a memc-train last.pt trained with --model {trained}; pass --model {trained}")
        state = state["model"]
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        mismatches = {name: compare_state_dict(state, name) for name in MODELS}  # names and shapes only
    except ValueError as error:
        raise UserError(f"{option} {path}: {error}") from None
    if not mismatches[model_name].fits:
        others = [name for name in MODELS if mismatches[name].fits]
        if others:
            raise UserError(f"{option} {path} is not a --model {model_name} checkpoint; it fits --model {others[0]}")
        nearest = min(MODELS, key=lambda name: (mismatches[name].size, name != model_name))
        raise UserError(f"{option} {path} is not a --model {model_name} checkpoint; it fits none of memc, memc_s, "
                        f"memc_star (as --model {nearest}: {mismatches[nearest].describe()})")
    factory, variant = MODELS[model_name]
    if mismatches[model_name].released:
        model = memc_models.load_original_checkpoint(state, variant)
    else:
        model = getattr(memc_models, factory)()
        state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
        model.load_state_dict(state, strict=False)  # fits: at most batch-norm counters are missing
    return model.eval().to(device)


def build_interpolator(device: torch.device, checkpoint: Optional[str] = None, model: str = "memc",
                       half: bool = False, fast: bool = False) -> Interpolator:
    """The default training-free path (one orientation instead of the four-way self-ensemble when
    ``fast``), or the MEMC-Net ``model`` from ``checkpoint``."""
    if checkpoint is None:
        from .classical import ClassicalConfig, ClassicalInterpolator

        classical = ClassicalInterpolator(ClassicalConfig(orientations=1 if fast else 4))
        return lambda frame0, frame1, times: classical.interpolate(frame0.to(device), frame1.to(device), times)

    net = load_model(checkpoint, model, device)
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=half and device.type == "cuda")

    @torch.no_grad()
    def run(frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
        frame0, frame1 = frame0.to(device), frame1.to(device)
        with autocast:
            return [net(frame0, frame1, float(t)).float().clamp(0, 1) for t in times]

    return run


def _output_paths(output: str, times: Sequence[float]) -> List[str]:
    """OUT itself for one time, else OUT_t<time><ext> per time: to 3 decimals, or as many more as
    it takes to tell the times apart (never two times in one file)."""
    if len(times) == 1:
        return [output]
    stem, suffix = os.path.splitext(output)
    for decimals in range(3, 10):
        paths = [f"{stem}_t{t:.{decimals}f}{suffix}" for t in times]
        if len(set(paths)) == len(paths):
            return paths
    raise UserError("--times: some times differ by less than 1e-9; they would share an output file")


def _images(args, interpolate: Interpolator, times: List[float]) -> None:
    frame0, frame1 = read_image(args.inputs[0]), read_image(args.inputs[1])
    if frame0.shape != frame1.shape:
        raise UserError(
            f"the frames differ in size: {args.inputs[0]} is {frame0.shape[3]}x{frame0.shape[2]}, "
            f"{args.inputs[1]} is {frame1.shape[3]}x{frame1.shape[2]}"
        )
    paths = _output_paths(args.output, times)
    # 16-bit inputs give 16-bit outputs where the output format has them.
    bits = 16 if all(stored_bits(path) == 16 for path in args.inputs) else 8
    start = time.perf_counter()
    frames = interpolate(frame0, frame1, times)
    elapsed = time.perf_counter() - start
    for path, frame in zip(paths, frames):
        write_image(path, frame, bits)
        if not args.quiet:
            print(path)
    if not args.quiet:
        print(f"{len(frames)} frame(s) in {elapsed:.2f} s", file=sys.stderr)


#: Below this overlap of two frames' colour histograms a video is taken to cut to another shot.
#: Consecutive frames of one shot overlap by 0.95 or more, frames 0.4 s apart by 0.85 or more;
#: different photographs by 0.3-0.7 (measured on a real video and scikit-image's samples).
SCENE_THRESHOLD = 0.75


def colour_overlap(frame0: Tensor, frame1: Tensor, bins: int = 32) -> float:
    """How much two (1, 3, H, W) frames in [0, 1] share their colours: the intersection of their
    per-channel histograms (``bins`` levels), averaged over the channels; 1 for the same colours,
    near 0 for none in common. Motion within a shot hardly changes it; a cut to another shot does."""
    levels = (torch.stack((frame0[0], frame1[0])).float().clamp(0, 1) * (bins - 1)).round().long()  # (2, 3, H, W)
    offsets = torch.arange(6, device=levels.device).view(2, 3, 1, 1) * bins  # one histogram per frame and channel
    counts = torch.bincount((levels + offsets).flatten(), minlength=6 * bins).view(2, 3, bins).float()
    shares = counts / counts.sum(-1, keepdim=True)
    return float(torch.minimum(shares[0], shares[1]).sum(-1).mean())


def _frames_between(interpolate: Interpolator, previous: Tensor, current: Tensor, times: Sequence[float],
                    scene_threshold: float) -> Tuple[List[Tensor], bool]:
    """The frames at ``times`` between two frames of a video, and whether the two are from
    different shots. Across a cut motion means nothing (interpolating blends two unrelated
    pictures), so each time repeats the frame nearest to it instead."""
    if scene_threshold > 0 and colour_overlap(previous, current) < scene_threshold:
        return [previous if t < 0.5 else current for t in times], True
    return interpolate(previous, current, times), False


def _note_cuts(args, cuts: Sequence[int]) -> None:
    if cuts and not args.quiet:
        shown = ", ".join(map(str, cuts[:10])) + (", ..." if len(cuts) > 10 else "")
        print(f"note: {len(cuts)} scene cut(s), before input frame(s) {shown} (counted from 0): the frames there "
              "repeat the nearest input instead of blending two shots (--scene-threshold 0 interpolates anyway)",
              file=sys.stderr)


def _video(args, reader: VideoReader, interpolate: Interpolator, times: List[float], factor: int) -> None:
    from tqdm import tqdm

    # N times the frames at N times the rate last as long as the input: its audio still fits.
    audio = has_audio(args.inputs[0])
    keep_audio = args.keep_audio and audio
    if not args.quiet:
        if args.keep_audio and not audio:
            print(f"note: {args.inputs[0]} has no audio to keep", file=sys.stderr)
        elif not args.keep_audio and audio:
            print(f"note: {args.inputs[0]} has audio; the output has none (--keep-audio copies it)", file=sys.stderr)
    if reader.looks_cut_short() and not args.quiet:
        print(f"note: {args.inputs[0]} announces {reader.duration:g} s at {reader.fps:g} fps (about "
              f"{round(reader.duration * reader.fps)} frames) but holds clearly fewer: the file looks cut short; "
              f"interpolating the frames it holds", file=sys.stderr)
    writer = None
    previous = None
    cuts = []
    total = None if reader.frame_count is None else factor * (reader.frame_count - 1) + 1
    bar = tqdm(total=total, unit="frame", desc="interpolating", disable=args.quiet, dynamic_ncols=True)
    try:
        for index, pixels in enumerate(reader):
            if writer is None:
                writer = VideoWriter(args.output, reader.size, reader.fps * factor)
            current = torch.from_numpy(pixels.astype("float32") / 255.0).permute(2, 0, 1).unsqueeze(0)
            if previous is not None:
                frames, cut = _frames_between(interpolate, previous, current, times, args.scene_threshold)
                if cut:
                    cuts.append(index)
                for frame in frames:
                    writer.write(to_uint8(frame))
                    bar.update(1)
            writer.write(pixels)
            bar.update(1)
            previous = current
        if writer is None:
            raise UserError(f"{args.inputs[0]}: the video has no frames")
        # One frame leaves nothing to interpolate: most likely a still saved as a video, so say so
        # rather than write a copy that looks like success.
        if writer.frames_written == 1:
            raise UserError(f"{args.inputs[0]}: the video has only 1 frame; there is nothing to interpolate")
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        bar.close()
    audio_problem = writer.close(audio_from=args.inputs[0] if keep_audio else None)
    if audio_problem is not None and not args.quiet:
        print(f"note: could not add the audio of {args.inputs[0]} ({audio_problem}); the output has none",
              file=sys.stderr)
    _note_cuts(args, cuts)
    if not args.quiet:
        print(f"{args.output}: {writer.frames_written} frames at {reader.fps * factor:g} fps", file=sys.stderr)


class _SequencePlan(NamedTuple):
    frames: List[str]   # the input frames, in natural name order
    outputs: List[str]  # OUT/00000.EXT, OUT/00001.EXT, ...
    bits: int           # 16 for 16-bit PNG or TIFF inputs, else 8


def _plan_sequence(args, factor: int) -> _SequencePlan:
    """What a folder of frames becomes, checked before any work: at least two frames in the folder;
    OUT a new or empty folder, not the input folder. The outputs are named by index with the
    inputs' extension (5 digits, or as many as the count needs)."""
    folder, output = args.inputs[0], args.output
    frames = list_frames(folder)
    if len(frames) < 2:
        raise UserError(f"{folder}: holds {len(frames)} image(s); a folder of frames needs at least 2 "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    # Sizes from the headers: a frame of another size fails here, not after half the work.
    first_size = image_size(frames[0])
    for path in frames[1:]:
        size = image_size(path)
        if first_size is not None and size is not None and size != first_size:
            raise UserError(f"the frames differ in size: {path} is {size[0]}x{size[1]}, "
                            f"{frames[0]} {first_size[0]}x{first_size[1]}")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"-o {output}: a folder of frames becomes a folder of frames; {output} is a file")
    if os.path.isdir(output):
        if os.path.samefile(output, folder):
            raise UserError(f"-o {output} is the input folder; choose another output folder")
        if os.listdir(output):
            raise UserError(f"-o {output} already holds files; choose a new or empty folder")
    count = factor * (len(frames) - 1) + 1
    extension = os.path.splitext(frames[0])[1].lower()
    digits = max(5, len(str(count - 1)))
    outputs = [os.path.join(output, f"{index:0{digits}d}{extension}") for index in range(count)]
    check_output(outputs[0])
    sixteen = extension in SIXTEEN_BIT_EXTENSIONS and all(stored_bits(path) == 16 for path in frames)
    bits = 16 if sixteen else 8
    return _SequencePlan(frames, outputs, bits)


def _sequence(args, plan: _SequencePlan, interpolate: Interpolator, times: List[float]) -> None:
    """A folder of frames to a folder of factor times as many, one pair in memory at a time. A run
    that fails or is stopped removes what it wrote, so that the same command can run again."""
    made_folder = not os.path.exists(args.output)
    try:
        cuts = _write_sequence(args, plan, interpolate, times)
    except BaseException:
        for path in plan.outputs:
            with contextlib.suppress(OSError):
                os.remove(path)
        if made_folder:
            with contextlib.suppress(OSError):
                os.rmdir(args.output)
        raise
    _note_cuts(args, cuts)
    if not args.quiet:
        print(f"{args.output}: {len(plan.outputs)} frames from {len(plan.frames)}", file=sys.stderr)


def _write_sequence(args, plan: _SequencePlan, interpolate: Interpolator, times: List[float]) -> List[int]:
    """Writes the frames of ``plan``; returns the scene cuts (input frame indices)."""
    from tqdm import tqdm

    outputs = iter(plan.outputs)
    previous = None
    cuts = []
    with tqdm(total=len(plan.outputs), unit="frame", desc="interpolating", disable=args.quiet,
              dynamic_ncols=True) as bar:
        for index, path in enumerate(plan.frames):
            current = read_image(path)
            if previous is not None:
                if current.shape != previous.shape:
                    raise UserError(f"the frames differ in size: {path} is {current.shape[3]}x{current.shape[2]}, "
                                    f"the frames before it {previous.shape[3]}x{previous.shape[2]}")
                frames, cut = _frames_between(interpolate, previous, current, times, args.scene_threshold)
                if cut:
                    cuts.append(index)
                for frame in frames:
                    write_image(next(outputs), frame, plan.bits)
                    bar.update(1)
            output = next(outputs)
            if stored_as_written(path, plan.bits):  # the input frame itself, not a re-encoded copy
                copy_image(path, output)
            else:
                write_image(output, current, plan.bits)
            bar.update(1)
            previous = current
    return cuts


def _check_outputs(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Every output can be written and none is an input (which would be destroyed while read)."""
    for output in outputs:
        for path in inputs:
            if os.path.exists(output) and os.path.samefile(output, path):
                raise UserError(f"-o {output} is the input {path}; choose another output name")
        check_output(output)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memc-interpolate",
        description="Interpolate the frames between two images, or raise the frame rate of a video or a folder of "
        "frames, with "
        "MEMC-Net's flow projection and adaptive warping. Without --checkpoint a training-free path runs "
        "(DIS optical flow, projection, bicubic adaptive warping, occlusion-aware blending).",
        epilog="examples:\n  memc-interpolate a.png b.png -o mid.png\n"
        "  memc-interpolate a.png b.png -o out.png --factor 4   (writes out_t0.250.png ...)\n"
        "  memc-interpolate in.mp4 -o out.mp4 --factor 2\n"
        "  memc-interpolate frames/ -o out_frames/ --factor 2   (writes out_frames/00000.png ...)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="two images (A B), one video, or one folder of frames (in natural name order)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (with several times, one file per time: NAME_t0.250.EXT ...), video, "
                        "or folder (for a folder of frames)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--times", type=float, nargs="+", metavar="T", help="times in (0, 1) between two images (default 0.5)")
    timing.add_argument("--factor", type=int, metavar="N",
                        help="N-1 evenly spaced frames between each pair; a video comes out at N times its frame rate "
                        "(default 2 for videos and folders of frames)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    parser.add_argument("--half", action="store_true", help="float16 autocast for the MEMC-Net model on CUDA")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a MEMC-Net checkpoint: ours (memc-train best.pt or last.pt) or the authors' release")
    parser.add_argument("--model", choices=sorted(MODELS), help="the checkpoint's variant (default: memc)")
    parser.add_argument("--fast", action="store_true",
                        help="training-free path: one orientation, no self-ensemble (4x faster, ~2%% higher error)")
    parser.add_argument("--scene-threshold", type=_unit_interval, default=SCENE_THRESHOLD, metavar="X",
                        help="videos and folders of frames: two frames whose colour histograms overlap less than X "
                        f"(0..1) are a cut to another shot, where the nearest input frame is repeated instead of "
                        f"interpolated (default {SCENE_THRESHOLD}; 0 interpolates everywhere)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="videos: copy the input's audio into the output (it lasts as long: N times the frames at "
                        "N times the rate); by default the output has none")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1; got {text}")
    return value


def _notes(args) -> List[str]:
    """Options given that do nothing with the others given, each as a note."""
    notes = []
    if args.checkpoint is None:
        if args.half:
            notes.append("--half applies to MEMC-Net models; the default path runs in float32")
        if args.model is not None:
            notes.append("--model applies with --checkpoint; without one the training-free path runs")
    elif args.fast:
        notes.append("--fast applies to the training-free path; it does not change a --checkpoint model")
    if args.keep_audio and not (len(args.inputs) == 1 and os.path.isfile(args.inputs[0])):
        notes.append("--keep-audio applies to an input video")
    return notes


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if len(args.inputs) > 2:
            raise UserError(f"expected two images, one video or one folder of frames; got {len(args.inputs)} inputs "
                            "(put a sequence's frames in a folder and pass the folder)")
        sequence = len(args.inputs) == 1 and os.path.isdir(args.inputs[0])
        video = len(args.inputs) == 1 and not sequence
        if video and os.path.splitext(args.inputs[0])[1].lower() in IMAGE_EXTENSIONS:
            raise UserError(f"{args.inputs[0]} is an image; pass two images, one video or one folder of frames")
        if (video or sequence) and args.times is not None:
            raise UserError(f"--times applies to two images; for a {'video' if video else 'folder of frames'} "
                            "use --factor N")
        factor = args.factor if args.factor is not None else (2 if video or sequence else None)
        times = frame_times(args.times, factor)
        if not args.quiet:
            for note in _notes(args):
                print(f"note: {note}", file=sys.stderr)
        device = pick_device(args.device)
        if sequence:
            plan = _plan_sequence(args, factor)
            interpolate = build_interpolator(device, args.checkpoint, args.model or "memc", args.half, args.fast)
            _sequence(args, plan, interpolate, times)
            return 0
        for path in args.inputs:  # fail before loading a model
            if os.path.isdir(path):
                raise UserError(f"{path} is a directory; expected an image file")
            if not os.path.isfile(path):
                raise UserError(f"{path}: no such file")
        (check_video_output if video else check_image_output)(args.output)
        _check_outputs(args.inputs, [args.output] if video else _output_paths(args.output, times))
        model = args.model or "memc"
        if video:
            reader = VideoReader(args.inputs[0])
            try:
                interpolate = build_interpolator(device, args.checkpoint, model, args.half, args.fast)
                _video(args, reader, interpolate, times, factor)
            finally:
                reader.close()
        else:
            interpolate = build_interpolator(device, args.checkpoint, model, args.half, args.fast)
            _images(args, interpolate, times)
    except UserError as error:
        print(f"memc-interpolate: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("memc-interpolate: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
