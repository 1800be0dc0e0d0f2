#!/usr/bin/python3
"""Golden outputs of timm's RandAugment ops ("inc1" list) at magnitude 9, and of
resized crops, from PIL.

timm is not packaged by Debian, so each op is written here as the PIL call timm's
auto_augment.py makes, with timm's level -> argument mappings, applied to a fixed
24 x 20 image (a formula the C++ test reproduces). randaugment_m9.txt: every op, the
geometric ones resampled bilinearly; randaugment_m9_bicubic.txt: the geometric ops
resampled bicubically, as DeiT's RandAugment does (its --train-interpolation). One
line per op: "<name> <negate> <24*20*3 bytes, HWC>".

resize.txt: torchvision's resized_crop on PIL images (crop, then resize with PIL's
antialiased filter) of the same image, one line per case: "<filter> <top> <left>
<height> <width> <out height> <out width> <bytes, HWC>", shrinking and enlarging.

Rerun with Debian's python3-pil:

    /usr/bin/python3 tools/make_randaugment_golden.py ssl/data/testdata
"""
import sys

import PIL
from PIL import Image, ImageEnhance, ImageOps

WIDTH, HEIGHT = 24, 20
FILL = (124, 116, 104)
LEVEL = 9 / 10.0


def fixed_image():
    pixels = bytearray()
    for y in range(HEIGHT):
        for x in range(WIDTH):
            pixels += bytes([(7 * x + 3 * y) % 256, (x * y + 40) % 256, (200 - 5 * x + 9 * y) % 256])
    return Image.frombytes("RGB", (WIDTH, HEIGHT), bytes(pixels))


def ops(sign, resample=Image.BILINEAR):
    def affine(img, matrix):
        return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=FILL)

    factor = 1.0 + sign * LEVEL * 0.9
    return [
        ("AutoContrast", lambda img: ImageOps.autocontrast(img)),
        ("Equalize", lambda img: ImageOps.equalize(img)),
        ("Invert", lambda img: ImageOps.invert(img)),
        ("Rotate", lambda img: img.rotate(sign * LEVEL * 30, resample=resample, fillcolor=FILL)),
        ("PosterizeIncreasing", lambda img: ImageOps.posterize(img, 4 - int(LEVEL * 4))),
        ("SolarizeIncreasing", lambda img: ImageOps.solarize(img, 256 - int(LEVEL * 256))),
        ("SolarizeAdd", lambda img: img.point(
            [min(255, i + int(LEVEL * 110)) if i < 128 else i for i in range(256)] * 3)),
        ("ColorIncreasing", lambda img: ImageEnhance.Color(img).enhance(factor)),
        ("ContrastIncreasing", lambda img: ImageEnhance.Contrast(img).enhance(factor)),
        ("BrightnessIncreasing", lambda img: ImageEnhance.Brightness(img).enhance(factor)),
        ("SharpnessIncreasing", lambda img: ImageEnhance.Sharpness(img).enhance(factor)),
        ("ShearX", lambda img: affine(img, (1, sign * LEVEL * 0.3, 0, 0, 1, 0))),
        ("ShearY", lambda img: affine(img, (1, 0, 0, sign * LEVEL * 0.3, 1, 0))),
        ("TranslateXRel", lambda img: affine(img, (1, 0, sign * LEVEL * 0.45 * WIDTH, 0, 1, 0))),
        ("TranslateYRel", lambda img: affine(img, (1, 0, 0, 0, 1, sign * LEVEL * 0.45 * HEIGHT))),
    ]


GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# (top, left, height, width) of the crop, then the output (height, width).
RESIZE_CASES = [((0, 0, 20, 24), (9, 11)), ((3, 2, 14, 17), (6, 5)), ((1, 4, 7, 9), (16, 21)),
                ((0, 0, 20, 24), (31, 13))]


def main(out_dir):
    with open(f"{out_dir}/randaugment_m9.txt", "w") as f:
        f.write(f"# written by tools/make_randaugment_golden.py (PIL {PIL.__version__}): timm's "
                "RandAugment ops at magnitude 9, geometric ones bilinear; per line: "
                "<name> <negate> <24*20*3 bytes, HWC>\n")
        for negate in (0, 1):
            for name, op in ops(-1.0 if negate else 1.0):
                out = op(fixed_image())
                f.write(f"{name} {negate} " + " ".join(str(b) for b in out.tobytes()) + "\n")
    with open(f"{out_dir}/randaugment_m9_bicubic.txt", "w") as f:
        f.write(f"# written by tools/make_randaugment_golden.py (PIL {PIL.__version__}): timm's "
                "geometric RandAugment ops at magnitude 9, bicubic; per line: "
                "<name> <negate> <24*20*3 bytes, HWC>\n")
        for negate in (0, 1):
            for name, op in ops(-1.0 if negate else 1.0, Image.BICUBIC):
                if name in GEOMETRIC:
                    out = op(fixed_image())
                    f.write(f"{name} {negate} " + " ".join(str(b) for b in out.tobytes()) + "\n")
    with open(f"{out_dir}/resize.txt", "w") as f:
        for filter_name, resample in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
            for (top, left, height, width), (out_h, out_w) in RESIZE_CASES:
                crop = fixed_image().crop((left, top, left + width, top + height))
                out = crop.resize((out_w, out_h), resample)
                f.write(f"{filter_name} {top} {left} {height} {width} {out_h} {out_w} " +
                        " ".join(str(b) for b in out.tobytes()) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
