"""Data: the embedded binarized digits, and binarized (Fashion-)MNIST from IDX files.

The default data set of every chapter is scikit-learn's 8x8 handwritten digits (1,797 images),
binarized at half intensity and shipped inside this package (14 KB), so nothing is downloaded.
The full-scale data sets are read from the standard IDX files in a local folder; they are
downloaded only when asked to (``download=True``) and their MD5 checksums are verified.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ._validate import check_positive
from .env import offset_seed

__all__ = ["Dataset", "load_digits", "read_idx", "load_mnist", "load_dataset", "IDX_FILES"]


@dataclass
class Dataset:
    """A train/test split of binary images, flattened.

    x_train: (n_train, D) and x_test: (n_test, D), values in {0, 1};
    y_train, y_test: (n,) integer labels; ``image_shape`` is (height, width).
    """
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, int]
    name: str

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def to(self, device=None, dtype=None) -> "Dataset":
        """The same data on another device or with another float dtype (labels stay integers)."""
        return Dataset(self.x_train.to(device=device, dtype=dtype), self.x_test.to(device=device, dtype=dtype),
                       self.y_train.to(device=device), self.y_test.to(device=device), self.image_shape, self.name)


def _split(x: np.ndarray, y: np.ndarray, n_test: int, seed: int):
    perm = np.random.default_rng(offset_seed(seed)).permutation(len(x))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], x[test], y[train], y[test]


def load_digits(*, n_test: int = 297, seed: int = 0, device=None, dtype=torch.float32) -> Dataset:
    """The embedded binarized 8x8 digits: 1,500 training and 297 test images of 64 pixels.

    The split is a seeded permutation, so the same ``seed`` always gives the same split (shifted,
    like every seed, by ``IAI_SEED_OFFSET``).
    """
    check_positive("n_test", n_test, integer=True)
    if n_test >= 1797:
        raise ValueError(f"n_test must be smaller than the 1,797 digits, got {n_test}")
    with resources.files("iai_core").joinpath("data/digits_binarized.npz").open("rb") as fh:
        packed = np.load(fh)
        x = np.unpackbits(packed["pixels"], axis=1)[:, :64]
        y = packed["labels"].astype(np.int64)
    xtr, xte, ytr, yte = _split(x, y, n_test, seed)
    t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return Dataset(t(xtr, dtype), t(xte, dtype), t(ytr, torch.int64), t(yte, torch.int64), (8, 8), "digits")


# --- IDX files (MNIST and Fashion-MNIST) ------------------------------------------------------

IDX_FILES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion_mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83fd310",
        },
    },
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says shape {dims}, found {body.size} values")
    return body.reshape(dims)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(name: str, root: Path, download: bool, verify: bool) -> dict[str, Path]:
    spec = IDX_FILES[name]
    paths = {}
    for fname, md5 in spec["md5"].items():
        gz, raw = root / fname, root / fname[:-3]
        if not gz.exists() and not raw.exists():
            if not download:
                raise FileNotFoundError(
                    f"{name}: {fname} not found in {root}. Put the four IDX files of {name} "
                    f"({', '.join(spec['md5'])}) there, from {spec['url']}, "
                    f"or call with download=True on a machine with network access (e.g. Colab).")
            root.mkdir(parents=True, exist_ok=True)
            tmp = gz.with_suffix(".part")
            try:
                with urllib.request.urlopen(spec["url"] + fname, timeout=60) as r, open(tmp, "wb") as out:
                    shutil.copyfileobj(r, out)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise ConnectionError(
                    f"{name}: could not download {spec['url'] + fname} ({e}). Download the files by hand "
                    f"into {root}; nothing falls back to other data.") from e
            tmp.rename(gz)
        if gz.exists():
            if verify and _md5(gz) != md5:
                raise ValueError(f"{gz} has MD5 {_md5(gz)}, expected {md5}: the file is corrupt or not {name}")
            paths[fname] = gz
        else:
            paths[fname] = raw
    return paths


def _binarize(images: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    p = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if how == "threshold":
        return (p >= 0.5).astype(np.uint8)
    if how == "sample":
        return (rng.random(p.shape, dtype=np.float32) < p).astype(np.uint8)
    raise ValueError(f"binarize must be 'threshold' or 'sample', got {how!r}")


def load_mnist(root=None, *, name: str = "mnist", download: bool = False, binarize: str = "threshold",
               seed: int = 0, verify: bool = True, device=None, dtype=torch.float32) -> Dataset:
    """Binarized MNIST or Fashion-MNIST from the standard IDX files in ``root``.

    root: folder holding the four IDX files (``.gz`` or unpacked); default ``$IAI_DATA/<name>``
    or ``~/.cache/iai_core/<name>``. ``binarize``: ``'threshold'`` (at 0.5) or ``'sample'``
    (one fixed Bernoulli draw per pixel, seeded by ``seed``). Raises ``FileNotFoundError`` with
    instructions when the files are missing and ``download`` is False.
    """
    if name not in IDX_FILES:
        raise ValueError(f"name must be one of {sorted(IDX_FILES)}, got {name!r}")
    if root is None:
        base = os.environ.get("IAI_DATA", str(Path.home() / ".cache" / "iai_core"))
        root = Path(base) / name
    paths = _fetch(name, Path(root), download, verify)
    rng = np.random.default_rng(seed)
    imgs = {s: read_idx(paths[f"{s}-images-idx3-ubyte.gz"]) for s in ("train", "t10k")}
    labs = {s: read_idx(paths[f"{s}-labels-idx1-ubyte.gz"]) for s in ("train", "t10k")}
    for s in imgs:
        if len(imgs[s]) != len(labs[s]):
            raise ValueError(f"{name}: {s} has {len(imgs[s])} images but {len(labs[s])} labels")
    shape = tuple(int(d) for d in imgs["train"].shape[1:])
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
    return Dataset(t(_binarize(imgs["train"], binarize, rng), dtype), t(_binarize(imgs["t10k"], binarize, rng), dtype),
                   t(labs["train"].astype(np.int64), torch.int64), t(labs["t10k"].astype(np.int64), torch.int64),
                   shape, name)


def load_dataset(name: str = "digits", **kwargs) -> Dataset:
    """One switch for every notebook: ``'digits'`` (embedded), ``'mnist'`` or ``'fashion_mnist'``."""
    if name == "digits":
        return load_digits(**{k: v for k, v in kwargs.items() if k in ("n_test", "seed", "device", "dtype")})
    return load_mnist(name=name, **kwargs)
