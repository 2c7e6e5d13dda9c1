"""Image files (memc_models.images): reading every common layout upright and whole, the errors for
files that cannot be used (damaged ones named, with what the decoder says), encoding and writing."""

import os
import warnings

import numpy as np
import pytest
import torch

from helpers import cv2, frame_at, iio, photo, pil, png_with_exif, to_tensor, write_clip
from memc_models.errors import UserError
from memc_models.frames import to_uint8
from memc_models.images import DamagedInputWarning, check_headers, file_extension, read_image, write_image


@pytest.mark.parametrize("path, extension", [("a/B.JPG", ".jpg"), ("frame.png", ".png"), ("clip.tar.MP4", ".mp4"),
                                             ("dir.d/noext", ""), (".hidden", "")])
def test_file_extension_is_the_last_suffix_of_the_name_in_lower_case(path, extension):
    assert file_extension(path) == extension


def test_list_frames_is_in_natural_order_of_image_files(tmp_path):
    from memc_models.images import list_frames

    for name in ("img10.png", "img9.png", "img100.PNG", "img9b.png", "img\u00b2.png", "readme.md", ".img1.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "img0.png").mkdir()
    assert [os.path.basename(p) for p in list_frames(str(tmp_path))] == ["img9.png", "img9b.png", "img10.png",
                                                                        "img100.PNG", "img\u00b2.png"]
    (tmp_path / "img11.jpg").write_bytes(b"")  # a second sequence, or the same saved twice, would interleave
    with pytest.raises(UserError) as error:
        list_frames(str(tmp_path))
    assert str(error.value) == (f"{tmp_path}: holds images of several formats (.jpg, .png); keep one sequence of "
                                "frames per folder")


def test_write_image_sixteen_bits_round_trip_and_refusals(tmp_path):
    frame = torch.rand(1, 3, 8, 10)
    for extension in ("png", "tif"):
        write_image(str(tmp_path / f"deep.{extension}"), frame, bits=16)
        torch.testing.assert_close(read_image(str(tmp_path / f"deep.{extension}")), frame, atol=0.5 / 65535, rtol=0)
    with pytest.raises(ValueError, match="16-bit pixels need one of .png, .tif, .tiff"):
        write_image(str(tmp_path / "deep.jpg"), np.zeros((8, 10, 3), np.uint16))
    with pytest.raises(ValueError, match="bits must be 8 or 16; got 12"):
        write_image(str(tmp_path / "deep.png"), frame, bits=12)


def test_read_image_converts_one_bit_grey_and_palette_images(tmp_path):
    Image = pil()
    rgb = frame_at(0.0, 32, 32)
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
    torch.testing.assert_close(read_image(str(tmp_path / "palette.png")), to_tensor(np.asarray(palette.convert("RGB"))),
                               atol=0, rtol=0)


def test_read_image_gives_cmyk_jpeg_its_rgb_colours(tmp_path):
    Image = pil()
    rgb = frame_at(0.0, 32, 32)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    frame = read_image(str(tmp_path / "cmyk.jpg"))
    assert frame.shape == (1, 3, 32, 32) and frame.dtype == torch.float32
    assert (frame - to_tensor(rgb)).abs().mean() < 0.02  # JPEG's loss only; CMYK read as RGB is ~0.5 off


@pytest.mark.parametrize("extension", ["jpg", "png"])
def test_read_image_turns_the_picture_upright_by_its_exif_orientation(tmp_path, extension):
    Image = pil()
    rgb = frame_at(0.0, 32, 48)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    path = tmp_path / f"phone.{extension}"
    image.save(path, exif=exif)
    stored = np.asarray(Image.open(path).convert("RGB"))  # the pixels as stored, on their side
    frame = read_image(str(path))
    assert frame.shape == (1, 3, 48, 32)
    torch.testing.assert_close(frame, to_tensor(np.ascontiguousarray(np.rot90(stored, -1))), atol=0, rtol=0)


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
    Image = pil()
    rgb = np.random.default_rng(1).integers(0, 65536, size=(24, 40, 3), dtype=np.uint16)
    stored = tmp_path / "stored.png"
    assert cv2.imwrite(str(stored), rgb[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    path.write_bytes(png_with_exif(stored.read_bytes(), exif.tobytes()[len(b"Exif\0\0"):]))
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

    from memc_models.images import _stored_with_16_bits

    for tile in [("zip", (0, 0, 4, 4), 41, "RGB;16B"), ("zip", (0, 0, 4, 4), 41, ("RGB;16B", 0, 1))]:
        assert _stored_with_16_bits(SimpleNamespace(format="PNG", tile=[tile]))  # a plain tuple: Pillow < 11
    assert not _stored_with_16_bits(SimpleNamespace(format="PNG", tile=[("zip", (0, 0, 4, 4), 41, "RGB")]))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_pictures_are_turned_upright_as_pillow_turns_eight_bit_ones(tmp_path, orientation):
    from PIL import ImageOps

    from memc_models.images import _upright

    Image = pil()
    rgb = np.random.default_rng(orientation).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "turned.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "turned.png")))
    np.testing.assert_array_equal(_upright(rgb, orientation), expected)


def test_read_image_takes_float_pixels_in_zero_to_one_only(tmp_path):
    rgb = frame_at(0.0, 32, 32)
    iio.imwrite(tmp_path / "unit.tif", rgb.astype(np.float32) / 255)
    torch.testing.assert_close(read_image(str(tmp_path / "unit.tif")), to_tensor(rgb), atol=1e-7, rtol=0)
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
    Image = pil()
    Image.fromarray(np.array([[0, 100], [23500, 7]], dtype=np.int32)).save(tmp_path / "wide.tif")
    path = tmp_path / "wide.tif"
    with pytest.raises(UserError) as error:
        read_image(str(path))
    assert str(error.value) == (f"{path}: int32 pixels (values 0..23500) have no standard scale; "
                                "save it with 8- or 16-bit integers, or floats in [0, 1]")


def test_read_image_refuses_several_frames(tmp_path):
    frames = np.stack([frame_at(t, 32, 32) for t in (0.0, 0.5, 1.0)])
    iio.imwrite(tmp_path / "anim.gif", frames, extension=".gif")
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 5)
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
    iio.imwrite(tmp_path / "whole.png", frame_at(0.0, 32, 32))
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
    picture = np.ascontiguousarray(photo()[:128, :128])
    write_image(str(tmp_path / f"out{extension}"), picture)
    error = np.abs(iio.imread(tmp_path / f"out{extension}").astype(float) - picture).mean()
    default_quality = tmp_path / f"default{extension}"
    iio.imwrite(default_quality, picture)
    assert error < 0.75 * np.abs(iio.imread(default_quality).astype(float) - picture).mean()
    assert error < 2.0


def test_a_png_whose_checksums_fail_is_an_error_naming_it(tmp_path):
    path = tmp_path / "frame.png"
    iio.imwrite(path, frame_at(0.0, 32, 32))
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the last IDAT chunk's data or checksum
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"^{path}: the image is damaged \\(|^cannot read {path} as an image"):
        read_image(str(path))


def test_a_damaged_jpeg_warns_once_naming_it_and_is_still_read(tmp_path):
    path = tmp_path / "frame.jpg"
    iio.imwrite(path, frame_at(0.0, 32, 48), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd3" + data[len(data) // 2:])  # a stray restart marker
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = read_image(str(path))
    assert frame.shape == (1, 3, 32, 48)
    assert [type(w.message) for w in caught] == [DamagedInputWarning]
    assert str(caught[0].message).startswith(f"{path}: the JPEG decoder reports damage (mjpeg: ")


def test_an_intact_jpeg_is_read_without_a_warning(tmp_path):
    path = tmp_path / "frame.jpg"
    iio.imwrite(path, frame_at(0.0, 32, 48), quality=95)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(str(path)).shape == (1, 3, 32, 48)


def test_the_jpeg_decoder_beside_a_failed_decode_is_stopped(tmp_path, monkeypatch):
    from memc_models import images

    started = []
    real = images._start_jpeg_decoder
    monkeypatch.setattr(images, "_start_jpeg_decoder", lambda *args: started.append(real(*args)) or started[-1])
    iio.imwrite(tmp_path / "whole.jpg", frame_at(0.0, 64, 64), quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((tmp_path / "whole.jpg").read_bytes()[:400])
    with pytest.raises(UserError, match=f"^cannot read {cut} as an image"):
        read_image(str(cut))
    assert len(started) == 1 and started[0].returncode is not None  # ended and reaped, not left running


def test_an_intact_lossless_jpeg_gets_no_damage_warning_though_ffmpeg_refuses_its_small_decode(tmp_path):
    import subprocess

    from memc_models import images
    from memc_models.ffmpeg import ffmpeg_exe

    path = tmp_path / "lossless.jpg"  # SOF3, which Pillow here does not decode: the check is called directly
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1",
                    "-c:v", "ljpeg", "-pix_fmt", "bgr24", str(path)], check=True)
    small = images._start_jpeg_decoder(str(path), lowres=True)
    assert "lowres is not possible" in images._decoder_complaint(small)  # what the fallback is for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with images._damage_check(str(path)) as check_damage:
            check_damage()


def test_a_lossless_jpeg_is_refused_by_name_with_what_to_do(tmp_path):
    import subprocess

    from memc_models.ffmpeg import ffmpeg_exe

    path = tmp_path / "lossless.jpg"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1",
                    "-c:v", "ljpeg", "-pix_fmt", "bgr24", str(path)], check=True)
    with pytest.raises(UserError) as error:
        read_image(str(path))
    assert str(error.value) == (f"cannot read {path}: it is a lossless JPEG, which the image readers here cannot "
                                "decode; convert it to PNG first (for example with `ffmpeg -i in.jpg out.png`)")
    with pytest.raises(UserError, match=f"{path}: not a readable image \\(a lossless JPEG, which cannot be decoded"):
        check_headers([str(path)])
    baseline = tmp_path / "baseline.jpg"  # an ordinary (DCT) JPEG is not taken for one
    iio.imwrite(baseline, frame_at(0.0, 8, 8), quality=90)
    from memc_models.images import _is_lossless_jpeg
    assert _is_lossless_jpeg(str(path)) and not _is_lossless_jpeg(str(baseline))


def test_check_headers_names_missing_and_unreadable_files(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    iio.imwrite(good, frame_at(0.0, 8, 8))
    bad.write_bytes(b"not a picture")
    check_headers([str(good)])
    with pytest.raises(UserError) as error:
        check_headers([str(good), str(bad), str(tmp_path / "gone.png")])
    assert str(error.value).startswith(f"2 input file(s) cannot be used: {bad}: not a readable image (")
    assert str(error.value).endswith(f"; {tmp_path / 'gone.png'}: no such file")
