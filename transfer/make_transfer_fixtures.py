#!/usr/bin/python3
"""Writes tiny transfer datasets in their distributed formats for transfer/datasets_test.

    make_transfer_fixtures.py <dir>

- <dir>/cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta pickled as
  Python 2's cPickle wrote the originals (protocol 2, str as BINSTRING/SHORT_BINSTRING,
  numpy arrays through _reconstruct), each checked to load with encoding="bytes";
- <dir>/cifar-100-python: train, test, meta pickled by Python 3 (protocol 4);
- <dir>/flowers: imagelabels.mat (compressed) and setid.mat (uncompressed) by
  scipy.io.savemat, as 1 x N double arrays like the originals (images by the test).
Pixel (n, c, p) of every CIFAR batch is (7 n + 3 c + p + batch) mod 256; labels are
(n + batch) mod classes.
"""
import os
import pickle
import struct
import sys

import numpy as np


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str opcodes, as cPickle did for the CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def batch(count, batch_index, classes, label_key, py2):
    n = np.arange(count).reshape(count, 1, 1)
    c = np.arange(3).reshape(1, 3, 1)
    p = np.arange(1024).reshape(1, 1, 1024)
    data = ((7 * n + 3 * c + p + batch_index) % 256).astype(np.uint8).reshape(count, 3072)
    labels = [(i + batch_index) % classes for i in range(count)]
    key = (lambda s: s.encode()) if py2 else (lambda s: s)
    return {key("batch_label"): key(f"batch {batch_index}"), key(label_key): labels,
            key("data"): data, key("filenames"): [key(f"img_{i}.png") for i in range(count)]}


def dump(obj, path, py2):
    with open(path, "wb") as f:
        if py2:
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=4)
    with open(path, "rb") as f:
        loaded = pickle.load(f, encoding="bytes")
    assert isinstance(loaded, dict), path


def main(out):
    cifar10 = os.path.join(out, "cifar-10-batches-py")
    os.makedirs(cifar10, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump({b"label_names": [s.encode() for s in names], b"num_vis": 3072}, f"{cifar10}/batches.meta", True)
    for i in range(1, 6):
        dump(batch(4, i, 10, "labels", True), f"{cifar10}/data_batch_{i}", True)
    dump(batch(6, 0, 10, "labels", True), f"{cifar10}/test_batch", True)

    cifar100 = os.path.join(out, "cifar-100-python")
    os.makedirs(cifar100, exist_ok=True)
    fine = [f"class{i}" for i in range(100)]
    dump({"fine_label_names": fine, "coarse_label_names": ["c"] * 20}, f"{cifar100}/meta", False)
    dump(batch(5, 1, 100, "fine_labels", False), f"{cifar100}/train", False)
    dump(batch(3, 0, 100, "fine_labels", False), f"{cifar100}/test", False)

    import scipy.io

    flowers = os.path.join(out, "flowers")
    os.makedirs(flowers, exist_ok=True)
    labels = np.array([[1, 2, 3, 1, 2, 3, 3]], dtype=np.float64)
    scipy.io.savemat(f"{flowers}/imagelabels.mat", {"labels": labels}, do_compression=True)
    scipy.io.savemat(f"{flowers}/setid.mat",
                     {"trnid": np.array([[1, 2]], dtype=np.float64),
                      "valid": np.array([[3, 4]], dtype=np.float64),
                      "tstid": np.array([[5, 6, 7]], dtype=np.float64)})


if __name__ == "__main__":
    main(sys.argv[1])
