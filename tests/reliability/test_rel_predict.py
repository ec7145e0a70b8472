"""`mnistkit predict` on the pictures people really have (issue 11, item 5).

Every picture is generated here with Pillow from an MNIST test digit: damaged and
hostile files, transparency, 16-bit, EXIF orientation, photos of paper with a dark
border, many files at once, and a run trained on 14x14 images.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FUZZ, assert_one_line_error, invoke, run_python, subprocess_env, time_limit
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from mnistkit.data.idx import write_idx
from mnistkit.errors import DataError, RunError
from mnistkit.preprocess import (
    MAX_PIXELS,
    load_image,
    mnistify,
    mnistify_digit,
    prepare_images,
)

QUICK = ["--limit", "2000", "--val-size", "500", "--epochs", "2", "-m", "hidden_size=32"]


# --- pictures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seven() -> np.ndarray:
    """An MNIST 7, white on black, 28x28 uint8."""
    from mnistkit.datasets import load_dataset

    test = load_dataset("mnist").test
    return test.images[int(np.flatnonzero(test.labels == 7)[0])]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict-run") / "r"
    result = invoke("train", *QUICK, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def big(digit: np.ndarray, factor: int = 4) -> np.ndarray:
    """``digit`` enlarged ``factor`` times (nearest neighbour)."""
    return np.kron(digit, np.ones((factor, factor), np.uint8))


def on_paper(digit: np.ndarray) -> np.ndarray:
    """Dark ink on light paper, 112x112: what people draw or photograph."""
    return 255 - big(digit)


def similar(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 images."""
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header is rewritten to declare ``width x height`` pixels."""
    Image.new("L", (8, 8), 255).save(path)
    data = path.read_bytes()
    start = data.index(b"IHDR")
    header = struct.pack(">II", width, height) + data[start + 12:start + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    path.write_bytes(data[:start] + b"IHDR" + header + crc + data[start + 21:])
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _text_bomb(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 10), zip=True)
    Image.new("L", (28, 28), 255).save(path, pnginfo=info)
    return path


def _itxt_bomb(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("comment", "y" * (PngImagePlugin.MAX_TEXT_CHUNK + 10), zip=True)
    Image.new("L", (28, 28), 255).save(path, pnginfo=info)
    return path


def _icc_bomb(path: Path) -> Path:
    Image.new("RGB", (28, 28), "white").save(
        path, icc_profile=b"\0" * (PngImagePlugin.MAX_TEXT_CHUNK + 10))
    return path


def _corrupt_idat(path: Path) -> Path:
    data = bytearray(_png_bytes(Image.fromarray(on_paper(np.eye(28, dtype=np.uint8) * 255))))
    start = data.index(b"IDAT") + 8
    data[start:start + 20] = bytes(20)
    return write_bytes(path, bytes(data))


def _truncated(fmt: str):
    def make(path: Path) -> Path:
        import io

        buffer = io.BytesIO()
        noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        Image.fromarray(noise).save(buffer, format=fmt)
        return write_bytes(path, buffer.getvalue()[:len(buffer.getvalue()) // 2])
    return make


def _bad_crc(path: Path) -> Path:
    data = bytearray(_png_bytes(Image.new("L", (28, 28), 255)))
    data[29] ^= 0xFF  # the CRC of IHDR
    return write_bytes(path, bytes(data))


def _gif_bomb(path: Path) -> Path:
    Image.new("L", (8, 8), 255).save(path, format="GIF")
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen
    start = data.index(b",")  # the image descriptor: 65535x65535 pixels
    data[start + 5:start + 9] = struct.pack("<HH", 65535, 65535)
    return write_bytes(path, bytes(data))


def _tiff_bomb(path: Path) -> Path:
    Image.new("L", (8, 8), 255).save(path, format="TIFF")
    data = bytearray(path.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            if kind == 3:
                struct.pack_into("<HHIH", data, entry, tag, 4, 1, 0)
            struct.pack_into("<HHII", data, entry, tag, 4, 1, 200_000)
    return write_bytes(path, bytes(data))


HOSTILE = {
    # name: (how to make it, a fragment of the message)
    "declares-100000x100000": (lambda p: png_with_size(p, 100_000, 100_000),
                               "refused before decoding"),
    "declares-9000x9000": (lambda p: png_with_size(p, 9000, 9000), "refused before decoding"),
    "declares-12000x12000": (lambda p: png_with_size(p, 12_000, 12_000),
                             "refused before decoding"),
    "gif-65535x65535": (_gif_bomb, "refused before decoding"),
    "tiff-200000x200000": (_tiff_bomb, "refused before decoding"),
    "ztxt-text-bomb": (_text_bomb, "not a readable image"),
    "itxt-text-bomb": (_itxt_bomb, "not a readable image"),
    "icc-profile-bomb": (_icc_bomb, "not a readable image"),
    "truncated-png": (_truncated("PNG"), "not a readable image"),
    "truncated-jpeg": (_truncated("JPEG"), "not a readable image"),
    "truncated-gif": (_truncated("GIF"), "not a readable image"),
    "truncated-tiff": (_truncated("TIFF"), "not a readable image"),
    "truncated-webp": (_truncated("WEBP"), "not a readable image"),
    "corrupt-idat": (_corrupt_idat, "not a readable image"),
    "bad-header-crc": (_bad_crc, "not a readable image"),
    "random-bytes": (lambda p: write_bytes(p, os.urandom(2000)), "not a readable image"),
    "html-page": (lambda p: write_bytes(p, b"<html><body>404 Not Found</body></html>"),
                  "not a readable image"),
    "png-signature-only": (lambda p: write_bytes(p, b"\x89PNG\r\n\x1a\n"),
                           "not a readable image"),
    "empty-file": (lambda p: write_bytes(p, b""), "the file is empty"),
    "blank-white": (lambda p: Image.new("L", (50, 50), 255).save(p) or p, "blank"),
    "blank-noise": (lambda p: Image.fromarray(np.random.default_rng(1).integers(
        120, 128, (60, 60), dtype=np.uint8)).save(p) or p, "blank"),
    "fully-transparent": (lambda p: Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(p) or p,
                          "fully transparent"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_pictures_are_one_error_naming_the_file(name, tmp_path):
    make, fragment = HOSTILE[name]
    path = make(tmp_path / f"{name}.png")
    with pytest.raises(DataError) as caught:
        load_image_and_mnistify(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)
    assert "\n" not in str(caught.value) and "<_io" not in str(caught.value)


def load_image_and_mnistify(path: Path) -> np.ndarray:
    [prepared] = prepare_images([path])
    if prepared.error is not None:
        raise DataError(prepared.message)
    return prepared.digit.image


def _seed_files() -> list[bytes]:
    import io

    rng = np.random.default_rng(0)
    pictures = []
    for fmt, mode in (("PNG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("JPEG", "RGB"),
                      ("GIF", "L"), ("TIFF", "I;16"), ("WEBP", "RGBA"), ("BMP", "RGB")):
        picture = Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).convert(
            mode if mode != "I;16" else "I;16")
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        pictures.append(buffer.getvalue())
    return pictures


SEEDS = _seed_files()


@st.composite
def mutated_picture(draw) -> bytes:
    """A small valid picture of some format with bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "max"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
            if not data:
                break
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at] = 0xFF
    return bytes(data)


@FUZZ
@given(blob=mutated_picture())
def test_fuzzed_picture_files_give_a_digit_or_one_error(tmp_path_factory, blob):
    """Mutated PNG, JPEG, GIF, TIFF, WebP and BMP files: a 28x28 digit or one error line
    naming the file; never another exception, never a hang."""
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / "picture.png"
    path.write_bytes(blob)
    with time_limit(20):
        [prepared] = prepare_images([path])
    if prepared.error is None:
        assert prepared.digit.image.shape == (28, 28)
    else:
        assert "\n" not in prepared.message and prepared.message.startswith(f"{path}: ")


@FUZZ
@given(height=st.integers(1, 70), width=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["constant", "noise", "binary", "gradient", "block", "dots"]))
def test_fuzzed_arrays_give_a_digit_or_a_data_error(height, width, seed, kind):
    rng = np.random.default_rng(seed)
    shape = (height, width)
    if kind == "constant":
        grey = np.full(shape, rng.integers(0, 256))
    elif kind == "noise":
        grey = rng.integers(0, 256, shape)
    elif kind == "binary":
        grey = (rng.random(shape) < rng.random()) * 255
    elif kind == "gradient":
        grey = np.linspace(0, 255, height * width).reshape(shape)
    elif kind == "block":
        grey = np.full(shape, 255)
        y, x = rng.integers(0, height), rng.integers(0, width)
        grey[y:y + rng.integers(1, height + 1), x:x + rng.integers(1, width + 1)] = 0
    else:
        grey = (rng.random(shape) < 0.02) * 255
    try:
        digit = mnistify_digit(grey.astype(np.uint8))
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert digit.image.shape == (28, 28) and digit.image.dtype == np.uint8


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    side = int(MAX_PIXELS ** 0.5) + 1
    path = png_with_size(tmp_path / "big.png", side, side)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own check switched off
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(DataError, match=rf"{side}x{side} pixels .* refused before decoding"):
        load_image(path)


def test_files_that_are_not_regular_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    cases = {fifo: "is a FIFO .named pipe., not a regular file", tmp_path / "folder.png": "folder",
             Path("/dev/zero"): "character device", tmp_path / "missing.png": "no such image"}
    link = tmp_path / "link-to-pipe.png"
    link.symlink_to(fifo)
    cases[link] = "is a FIFO"
    for path, fragment in cases.items():
        with pytest.raises(DataError, match=fragment) as caught:
            load_image(path)
        assert str(caught.value).startswith(f"{path}: ")


# --- transparency, depth, orientation, modes ------------------------------------------

def test_dark_strokes_on_a_transparent_background_are_composited_on_white(seven):
    reference = mnistify(on_paper(seven))
    ink = big(seven)
    # black strokes, alpha = the ink; the transparent pixels are black too (as drawing
    # programs save them): flattened naively this is all black, "blank"
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[..., 3] = ink
    assert similar(mnistify(_through_png(Image.fromarray(rgba))), reference) > 0.98


def test_light_strokes_on_a_transparent_background_are_composited_on_black(seven):
    ink = big(seven)
    rgba = np.full((*ink.shape, 4), 255, np.uint8)
    rgba[..., 3] = ink
    assert similar(mnistify(_through_png(Image.fromarray(rgba))), mnistify(ink)) > 0.98


@pytest.mark.parametrize("mode", ["LA", "PA", "P+transparency", "RGB+tRNS", "L+tRNS", "RGBa"])
def test_other_transparent_modes(mode, seven):
    reference = mnistify(on_paper(seven))
    ink = big(seven)
    if mode == "LA":
        image = Image.fromarray(np.stack([np.zeros_like(ink), ink], axis=-1), "LA")
    elif mode == "PA":
        image = Image.fromarray(np.stack([np.zeros_like(ink), ink], axis=-1), "LA")
        image = image.convert("RGBA").convert("PA")
    elif mode == "P+transparency":  # a GIF-like palette picture, index 0 transparent
        image = Image.fromarray(np.where(ink > 127, 1, 0).astype(np.uint8), "P")
        image.putpalette([0, 0, 0, 20, 20, 20] + [0] * 762)
        image.info["transparency"] = 0
    elif mode == "RGBa":
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[..., 3] = ink
        image = Image.fromarray(rgba).convert("RGBa")
    else:  # one colour marked transparent (PNG tRNS): black background, dark-grey ink
        grey = np.where(ink > 127, 30, 0).astype(np.uint8)
        image = Image.fromarray(grey if mode == "L+tRNS" else np.stack([grey] * 3, -1))
        image.info["transparency"] = 0 if mode == "L+tRNS" else (0, 0, 0)
    grey = _to_grey_of(image)
    assert similar(mnistify(grey), reference) > 0.9, mode


def _to_grey_of(image: Image.Image) -> np.ndarray:
    from mnistkit.preprocess import _to_grey

    return _to_grey(image)


def _through_png(image: Image.Image, **kwargs) -> np.ndarray:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.png"
        image.save(path, **kwargs)
        return load_image(path)


@pytest.mark.parametrize("mode", ["I;16", "I;16-12bit", "I", "I-24bit", "F", "F-0..1"])
def test_deep_pictures_are_scaled_by_their_depth_not_clipped(mode, seven):
    reference = mnistify(on_paper(seven))
    paper = on_paper(seven).astype(np.float64)
    if mode == "I;16":
        grey = _through_png(Image.fromarray((paper * 257).astype(np.uint16)))
    elif mode == "I;16-12bit":  # a 12-bit camera or scanner in a 16-bit file
        grey = _through_png(Image.fromarray((paper * 4095 / 255).astype(np.uint16)))
    elif mode == "I":
        grey = _to_grey_of(Image.fromarray((paper * 257).astype(np.int32)))
    elif mode == "I-24bit":
        grey = _to_grey_of(Image.fromarray((paper * 65793).astype(np.int32)))
    else:
        values = paper / 255.0 if mode == "F-0..1" else paper
        grey = _to_grey_of(Image.fromarray(values.astype(np.float32)))
    assert grey.min() <= 5 and grey.max() >= 250, mode  # full range, not clipped white
    assert similar(mnistify(grey), reference) > 0.98


def test_a_16_bit_png_is_read_as_16_bit(tmp_path, seven):
    path = tmp_path / "deep.png"
    Image.fromarray(on_paper(seven).astype(np.uint16) * 257).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # the file really is 16-bit
    assert similar(mnistify(load_image(path)), mnistify(on_paper(seven))) > 0.98


@pytest.mark.parametrize("orientation,turns", [(3, 2), (6, 1), (8, -1)])
def test_the_exif_orientation_is_applied(orientation, turns, seven, tmp_path):
    # stored turned; the EXIF tag tells viewers (and us) how to turn it upright
    stored = np.ascontiguousarray(np.rot90(on_paper(seven), k=turns))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated-{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    assert similar(mnistify(load_image(path)), mnistify(on_paper(seven))) > 0.98
    assert similar(mnistify(stored), mnistify(on_paper(seven))) < 0.9  # the tag matters


@pytest.mark.parametrize("mode", ["1", "CMYK", "YCbCr", "HSV", "LAB", "RGB", "P"])
def test_colour_and_bilevel_modes(mode, seven):
    reference = mnistify(on_paper(seven))
    rgb = Image.fromarray(on_paper(seven)).convert("RGB")
    assert similar(mnistify(_to_grey_of(rgb.convert(mode))), reference) > 0.9, mode


def test_a_huge_photo_is_reduced_not_decoded_in_full_detail(seven, tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(big(255 - seven, 150)).save(path, quality=90)  # 4200x4200
    grey = load_image(path)
    assert max(grey.shape) <= 1024
    assert similar(mnistify(grey), mnistify(on_paper(seven))) > 0.95


# --- photos of paper ----------------------------------------------------------------

def photo(digit: np.ndarray, border: str = "all", seed: int = 0) -> np.ndarray:
    """A photo-like picture: dark table around a sheet of paper with the digit in ink,
    some noise and an uneven light."""
    rng = np.random.default_rng(seed)
    height, width = 300, 240
    picture = np.full((height, width), 45.0)
    top, left = {"all": (40, 30), "bottom": (0, 0), "left-corner": (0, 0)}[border]
    bottom, right = {"all": (260, 210), "bottom": (240, width),
                     "left-corner": (height, width)}[border]
    picture[top:bottom, left:right] = 225.0
    if border == "left-corner":
        yy, xx = np.indices(picture.shape)
        picture[xx + yy < 90] = 40.0
    ink = big(digit, 4).astype(np.float64) / 255.0
    cy, cx = (top + bottom) // 2 - 56, (left + right) // 2 - 56
    picture[cy:cy + 112, cx:cx + 112] -= 190.0 * ink
    picture += rng.normal(0, 4, picture.shape) + np.linspace(-15, 15, width)[None, :]
    return np.clip(picture, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("border", ["all", "bottom", "left-corner"])
def test_a_dark_border_around_the_paper_is_not_taken_for_ink(border, seven):
    digit = mnistify_digit(photo(seven, border))
    assert similar(digit.image, mnistify(on_paper(seven))) > 0.9
    assert digit.warnings == ()


def test_a_blank_sheet_in_a_dark_border_is_blank(seven):
    with pytest.raises(DataError, match="no digit found: the ink runs along 100% of the "
                                        "picture's edges"):
        mnistify(photo(np.zeros_like(seven), "all"))
    with pytest.raises(DataError, match="no digit found: the ink runs along 33% of"):
        mnistify(photo(np.zeros_like(seven), "bottom"))
    dusty = photo(np.zeros_like(seven), "all")
    dusty[150:152, 120:122] = 30  # one speck of dust on the sheet
    with pytest.raises(DataError, match="blank: no digit found inside the border"):
        mnistify(dusty)
    dust = 255 - big(np.zeros_like(seven))
    dust[50:52, 60:62] = 0  # one speck of 4 pixels on 112x112 paper
    with pytest.raises(DataError, match="blank"):
        mnistify(dust)


def test_the_old_border_mistake_is_gone(seven):
    # the old preprocessing took the median of the border (dark) as the background and
    # the paper as ink: the result was a filled rectangle
    digit = mnistify(photo(seven, "all"))
    assert (digit > 96).mean() < 0.35


def test_pictures_that_do_not_look_like_one_digit_are_warned_about(seven):
    two = np.hstack([on_paper(seven), on_paper(seven)])
    assert any("side by side" in w for w in mnistify_digit(two).warnings)
    cut = on_paper(seven)[40:, :]  # the top of the 7 cut off by the edge
    assert any("touches the edge" in w for w in mnistify_digit(cut).warnings)
    checks = np.kron(np.indices((6, 6)).sum(axis=0) % 2, np.ones((20, 20))) * 255
    with pytest.raises(DataError, match="no digit found: the ink runs along"):
        mnistify_digit(checks.astype(np.uint8))
    assert mnistify_digit(on_paper(seven)).warnings == ()


def test_specks_of_dust_do_not_shrink_the_digit(seven):
    dusty = on_paper(seven)
    dusty[2:4, 2:4] = 0
    dusty[105:107, 100:102] = 0
    assert similar(mnistify(dusty), mnistify(on_paper(seven))) > 0.98


# --- the command line ---------------------------------------------------------------

def _pictures(folder: Path, seven: np.ndarray) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    good = folder / "seven.png"
    Image.fromarray(on_paper(seven)).save(good)
    transparent = folder / "transparent.png"
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[..., 3] = big(seven)
    Image.fromarray(rgba).save(transparent)
    broken = write_bytes(folder / "broken.png", b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    blank = folder / "blank.png"
    Image.new("L", (80, 80), 250).save(blank)
    return {"good": good, "transparent": transparent, "broken": broken, "blank": blank}


def test_many_pictures_bad_ones_named_others_classified_in_a_real_process(
        run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    order = [p["good"], p["broken"], p["transparent"], p["blank"]]
    done = run_python("from mnistkit.cli import main; main()", "predict", str(run_dir),
                      *map(str, order))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {p['broken']}: not a readable image (not a picture format "
                      f"Pillow knows, or damaged at the start)",
                      f"Error: {p['blank']}: the image is blank: no digit found"]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(p["good"]), str(p["transparent"])]
    assert lines[0].split(": ")[1].startswith("7 ") and lines[1].split(": ")[1].startswith("7 ")


def test_json_records_per_file_errors(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    result = invoke("predict", run_dir, p["good"], p["broken"], p["blank"], "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    records = json.loads(result.stdout)
    assert [r["image"] for r in records] == [str(p["good"]), str(p["broken"]), str(p["blank"])]
    assert records[0]["top"][0]["class"] == "7" and records[0]["warnings"] == []
    assert records[1] == {"image": str(p["broken"]), "error": "not a readable image (not a "
                          "picture format Pillow knows, or damaged at the start)"}
    assert records[2] == {"image": str(p["blank"]), "error": "the image is blank: no digit found"}


def test_one_bad_picture_alone_is_one_error_line(run_dir, tmp_path):
    bomb = png_with_size(tmp_path / "bomb.png", 100_000, 100_000)
    assert_one_line_error(invoke("predict", run_dir, bomb), str(bomb),
                          "refused before decoding", exit_code=1)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_one_line_error(invoke("predict", run_dir, folder), f"{folder}: is a folder",
                          exit_code=1)


def test_all_good_pictures_exit_0(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    result = invoke("predict", run_dir, p["good"], p["transparent"])
    assert result.exit_code == 0, result.output
    assert result.output.count(": 7 ") == 2


def test_pillow_warnings_never_reach_the_terminal(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    # a real process with Python's default warning filters: Pillow warns about odd files
    # (here: every file, and a pixel limit low enough for its decompression-bomb warning)
    code = ("import warnings, PIL.Image as I\n"
            "I.MAX_IMAGE_PIXELS = 10000\n"  # 112x112 = 12544: a DecompressionBombWarning
            "real = I.open\n"
            "def noisy(*a, **k):\n"
            "    warnings.warn('Corrupt EXIF data', UserWarning)\n"
            "    return real(*a, **k)\n"
            "I.open = noisy\n"
            "from mnistkit.cli import main; main()")
    done = run_python(code, "predict", str(run_dir), str(p["good"]),
                      env=subprocess_env(PYTHONWARNINGS="default"))
    assert "UserWarning" not in done.stderr and "Corrupt EXIF" not in done.stderr, done.stderr
    assert "warnings.warn" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: {p['good']}: too many pixels for a digit picture: refused before decoding "
        f"(DecompressionBombWarning: Image size (12544 pixels) exceeds limit of 10000 pixels, "
        f"could be decompression bomb DOS attack.)"]
    assert done.returncode == 1


def test_doubtful_pictures_get_a_warning_line_and_are_still_classified(run_dir, seven,
                                                                       tmp_path):
    two = tmp_path / "two-sevens.png"
    Image.fromarray(np.hstack([on_paper(seven), on_paper(seven)])).save(two)
    done = run_python("from mnistkit.cli import main; main()", "predict", str(run_dir),
                      str(two))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"warning: {two}: does not look like one digit: ")
    assert "side by side" in done.stderr and done.stdout.startswith(f"{two}: ")


def test_show_input_prints_what_the_model_saw(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    result = invoke("predict", run_dir, p["good"], "--show-input", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("What the model saw (28x28):")
    assert lines[start + 1].strip() == "seven.png"
    from mnistkit.terminal import digit_lines

    expected = [line.rstrip() for line in digit_lines(mnistify(on_paper(seven)))]
    assert lines[start + 2:start + 2 + 14] == expected


def test_save_input_writes_the_28x28_images(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    out = tmp_path / "seen"
    result = invoke("predict", run_dir, p["good"], p["broken"], p["transparent"],
                    "--save-input", out)
    assert result.exit_code == 1
    assert sorted(f.name for f in out.iterdir()) == ["seven.png", "transparent.png"]
    saved = np.asarray(Image.open(out / "seven.png"))
    assert saved.shape == (28, 28) and np.array_equal(saved, mnistify(on_paper(seven)))


# --- a run trained on another image size ----------------------------------------------

@pytest.fixture(scope="module")
def small_images_run(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("run14")
    data = base / "data14"
    data.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 50)):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 14, 14), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    out = base / "r14"
    result = invoke("train", "--data-dir", data, "--val-size", "50", "--epochs", "1",
                    "-m", "hidden_size=8", "--out", out)
    assert result.exit_code == 0, result.output
    return out, data


def test_a_run_trained_on_14x14_images_is_refused(small_images_run, seven, tmp_path):
    run, data = small_images_run
    picture = tmp_path / "seven.png"
    Image.fromarray(on_paper(seven)).save(picture)
    assert_one_line_error(invoke("predict", run, picture, "--data-dir", data),
                          f"{run}: this run was trained on 14x14 images", "28x28",
                          exit_code=1)
    # without its data the bundled 28x28 MNIST is found: refused too, before any matmul
    assert_one_line_error(invoke("predict", run, picture), f"{run}: was trained on other data",
                          "28x28", exit_code=1)


def test_require_digit_size():
    from mnistkit.preprocess import require_digit_size

    require_digit_size((28, 28), "r")
    with pytest.raises(RunError, match="trained on 14x14 images"):
        require_digit_size((14, 14), "r")


def test_save_input_into_an_impossible_folder_is_one_line(run_dir, seven, tmp_path):
    p = _pictures(tmp_path / "pics", seven)
    (tmp_path / "a-file").write_text("x")
    assert_one_line_error(invoke("predict", run_dir, p["good"], "--save-input",
                                 tmp_path / "a-file" / "seen"),
                          f"cannot write {tmp_path / 'a-file' / 'seen'}", exit_code=1)


def test_help_does_not_import_pillow():
    done = run_python("import sys; from mnistkit.cli import main\n"
                      "try:\n    main(['predict', '--help'])\n"
                      "except SystemExit:\n    pass\n"
                      "print(sorted({'PIL', 'mnistkit.preprocess'} & set(sys.modules)))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]"), done.stdout
