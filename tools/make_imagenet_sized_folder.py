#!/usr/bin/python3
"""Writes an ImageFolder of ImageNet-sized photos (500x375, JPEG quality 90, ImageNet's
typical size and encoding) by enlarging the first `per class` images of each class of
another ImageFolder (e.g. the 224 px Imagenette copy) with PIL's bicubic filter. For
benchmarking decode-heavy pipelines on real photographs at ImageNet's pixel count.

    /usr/bin/python3 tools/make_imagenet_sized_folder.py SOURCE_ROOT DESTINATION [per class]
"""
import os
import sys

from PIL import Image


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    source, destination = sys.argv[1], sys.argv[2]
    per_class = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    written = 0
    for label in sorted(os.listdir(source)):
        folder = os.path.join(source, label)
        if not os.path.isdir(folder):
            continue
        os.makedirs(os.path.join(destination, label), exist_ok=True)
        for name in sorted(os.listdir(folder))[:per_class]:
            with Image.open(os.path.join(folder, name)) as image:
                enlarged = image.convert("RGB").resize((500, 375), Image.BICUBIC)
            stem = os.path.splitext(name)[0]
            enlarged.save(os.path.join(destination, label, stem + ".jpg"), quality=90)
            written += 1
    print(f"wrote {written} images of 500x375 to {destination}")


if __name__ == "__main__":
    main()
