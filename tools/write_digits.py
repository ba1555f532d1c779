"""Write scikit-learn's 1,797 handwritten digits as a class-folder tree of 8 x 8 PNGs.

    python tools/write_digits.py OUT        # then: netgraph train recipes/examples/digits.yaml --data-dir OUT

The digits (sklearn.datasets.load_digits: 8 x 8 grey levels 0..16, shipped with
scikit-learn, no download) are scaled to 0..255 (round(v * 255 / 16)) and written as
OUT/0/0000.png ... OUT/9/1796.png, one folder per digit, for data.dataset: folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_digits(out) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    out = Path(out)
    for i, (image, label) in enumerate(zip(images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder to write (OUT/DIGIT/NNNN.png)")
    out = write_digits(parser.parse_args(argv).out)
    print(f"wrote 1,797 digits to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
