"""Data: the embedded binarized digits, and (Fashion-)MNIST binarized as the papers did.

The default data set of every chapter is scikit-learn's 8x8 handwritten digits (1,797 images),
binarized at half intensity and shipped inside this package (14 KB), so nothing is downloaded.
The full-scale sets are read from their standard files in a local folder, searched in this order:
an explicit ``root``; ``$IAI_DATA/<name>``; ``~/.cache/iai_core/<name>``; Debian's folder
(``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``;
Debian packages no MNIST). Files are downloaded only with ``download=True``, and every file is
checked by the SHA-256 of its decompressed content (``iai_core.idx``).

The binarizations (``binarize=``) of the papers the book follows:

    'threshold'  pixel >= 0.5 (UIVI's Fashion-MNIST: Titsias & Ruiz 2019);
    'dynamic'    a fresh Bernoulli draw from the grey levels for every training minibatch
                 (Iterative Amortized Inference: Marino et al. 2018): ``x_train`` keeps the grey
                 levels and the training loop applies ``dynamic_binarize``; the test set is one
                 fixed seeded draw, so evaluations compare;
    'static'     the statically binarized MNIST of Larochelle & Murray (2011), the ``.amat`` files
                 (UIVI's MNIST): 50,000 training, 10,000 validation (``x_valid``), 10,000 test images;
                 the files carry no labels.

Under ``IAI_SMOKE=1`` every loader keeps only the first ``SMOKE_EXAMPLES`` (train, test) examples
and skips the content check, so tests run the full-scale code on the tiny synthetic files of
``write_synthetic_data``.
"""
from __future__ import annotations

import os
import shutil
import urllib.request
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ._random import make_generator
from ._validate import check_generator, check_positive, check_seed, check_tensor
from .env import SMOKE_EXAMPLES, offset_seed, smoke
from .idx import read_amat, read_idx, write_amat, write_idx

__all__ = ["Dataset", "load_digits", "read_idx", "write_idx", "load_mnist", "load_dataset", "dynamic_binarize",
           "write_synthetic_data", "BINARIZATIONS", "DATA_FILES", "DEBIAN_FOLDERS"]

BINARIZATIONS = ("threshold", "dynamic", "static")


@dataclass
class Dataset:
    """A train/test split of images, flattened.

    x_train: (n_train, D) and x_test: (n_test, D), values in {0, 1}, except that with
    ``binarize == 'dynamic'`` x_train holds grey levels in [0, 1] that the training loop binarizes
    per minibatch (``transform``). y_train, y_test: (n,) integer labels, or None where the files
    have none (static MNIST). x_valid: (n_valid, D) or None. ``source``: where the files were read.
    """
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor | None
    y_test: torch.Tensor | None
    image_shape: tuple[int, int]
    name: str
    binarize: str = "threshold"
    x_valid: torch.Tensor | None = None
    source: str = ""

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def transform(self):
        """What a training loop applies to each minibatch, ``transform(x_batch, generator)``:
        ``dynamic_binarize`` for dynamically binarized data, else None."""
        return dynamic_binarize if self.binarize == "dynamic" else None

    def to(self, device=None, dtype=None) -> "Dataset":
        """The same data on another device or with another float dtype (labels stay integers)."""
        x = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        y = lambda t: None if t is None else t.to(device=device)  # noqa: E731
        return replace(self, x_train=x(self.x_train), x_test=x(self.x_test), x_valid=x(self.x_valid),
                       y_train=y(self.y_train), y_test=y(self.y_test))


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli draw per pixel: x: (batch, D) grey levels in [0, 1] -> (batch, D) in {0, 1}.

    Same device and dtype as ``x``; ``generator`` (on x's device) makes the draw reproducible.
    """
    check_tensor("x", x, finite=False)   # no finiteness check: it would stall a GPU on every minibatch
    check_generator("generator", generator, x.device)
    return torch.bernoulli(x, generator=generator)


def _cap(*arrays_and_limits):
    """Under IAI_SMOKE=1, the first ``limit`` rows of each array; otherwise the arrays."""
    return [a if a is None or not smoke() else a[:n] for a, n in arrays_and_limits]


def _tensor(a, dtype, device):
    return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)


def load_digits(*, n_test: int = 297, seed: int = 0, device=None, dtype=torch.float32) -> Dataset:
    """The embedded binarized 8x8 digits: 1,500 training and 297 test images of 64 pixels.

    The split is a seeded permutation, so the same ``seed`` always gives the same split (shifted,
    like every seed, by ``IAI_SEED_OFFSET``).
    """
    check_positive("n_test", n_test, integer=True)
    check_seed("seed", seed)
    if n_test >= 1797:
        raise ValueError(f"n_test must be smaller than the 1,797 digits, got {n_test}")
    with resources.files("iai_core").joinpath("data/digits_binarized.npz").open("rb") as fh:
        packed = np.load(fh)
        x = np.unpackbits(packed["pixels"], axis=1)[:, :64]
        y = packed["labels"].astype(np.int64)
    perm = np.random.default_rng(offset_seed(seed)).permutation(len(x))
    test, train = perm[:n_test], perm[n_test:]
    xtr, ytr, xte, yte = _cap((x[train], SMOKE_EXAMPLES[0]), (y[train], SMOKE_EXAMPLES[0]),
                              (x[test], SMOKE_EXAMPLES[1]), (y[test], SMOKE_EXAMPLES[1]))
    return Dataset(_tensor(xtr, dtype, device), _tensor(xte, dtype, device), _tensor(ytr, torch.int64, device),
                   _tensor(yte, torch.int64, device), (8, 8), "digits", source="embedded in iai_core")


# --- the files: where they come from, their content hashes, where they are looked for ----------------------------

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# SHA-256 of each file's decompressed content.
# MNIST: as listed for the uncompressed files by the dataset-ml crate (docs.rs/crate/dataset-ml/0.5.0,
#   src/dataset/mnist.rs), and the same in several independent projects that pin the gunzipped files of
#   the mirrors whose .gz files carry torchvision's MD5s (f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...).
# Fashion-MNIST: computed from Debian's dataset-fashion-mnist (re-gzipped, identical content), which is
#   faithful: 60,000 + 10,000 images, 6,000 per class in training, training pixel mean 0.2860 as published;
#   the same hashes are listed by dataset-ml (src/dataset/fashion_mnist.rs), and the MD5s of this content
#   (f4a8712d..., 9018921c..., 8181f547..., 15d48437...) match torchvision-derived listings of the raw files.
# Static binarized MNIST: tensorflow_datasets' url_checksums/binarized_mnist.txt (the .amat files are text).
DATA_FILES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/", "download_suffix": ".gz", "sha256": dict(zip(_IDX, (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")))},
    "fashion_mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "download_suffix": ".gz",
        "sha256": dict(zip(_IDX, (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")))},
    "binarized_mnist": {
        "url": "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/", "download_suffix": "",
        "sha256": {
            "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
            "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
            "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"}},
}

# Folders that Debian's packages install (apt-get install dataset-fashion-mnist); Debian has no MNIST package.
DEBIAN_FOLDERS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
_DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}


def _candidates(name: str, root) -> list[tuple[Path, str]]:
    """The folders to look in, in order, each with how it was chosen."""
    if root is not None:
        return [(Path(root), "root")]
    found = []
    if os.environ.get("IAI_DATA", "").strip():
        found.append((Path(os.environ["IAI_DATA"]) / name, "$IAI_DATA"))
    found.append((Path.home() / ".cache" / "iai_core" / name, "cache"))
    if name in DEBIAN_FOLDERS:
        found.append((DEBIAN_FOLDERS[name], f"Debian's {_DEBIAN_PACKAGES[name]}"))
    return found


def _in(folder: Path, fname: str) -> Path | None:
    """``folder/fname`` unpacked or gzipped, whichever exists (unpacked first)."""
    return next((p for p in (folder / fname, folder / (fname + ".gz")) if p.is_file()), None)


def _download(name: str, folder: Path) -> None:
    spec = DATA_FILES[name]
    folder.mkdir(parents=True, exist_ok=True)
    for fname in spec["sha256"]:
        if _in(folder, fname) is not None:
            continue
        url, dest = spec["url"] + fname + spec["download_suffix"], folder / (fname + spec["download_suffix"])
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as out:
                shutil.copyfileobj(r, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ConnectionError(f"{name}: could not download {url} ({e}). Download the files by hand into "
                                  f"{folder}; nothing falls back to other data.") from e
        tmp.rename(dest)


def _locate(name: str, root, download: bool) -> tuple[Path, dict[str, Path]]:
    """The first folder holding every file of ``name``, and the path of each file in it."""
    fnames = list(DATA_FILES[name]["sha256"])
    candidates = _candidates(name, root)
    for folder, _ in candidates:
        paths = {f: _in(folder, f) for f in fnames}
        if all(paths.values()):
            return folder, paths
    if download:
        _download(name, candidates[0][0])
        return _locate(name, candidates[0][0], False)
    looked = "; ".join(f"{folder} ({how})" for folder, how in candidates)
    ways = [f"`make data` or `sudo apt-get install {_DEBIAN_PACKAGES[name]}` (Debian, Ubuntu)"] \
        if name in _DEBIAN_PACKAGES and root is None else []
    ways += ["download=True on a machine with network access (e.g. Colab)",
             f"copying the files {', '.join(fnames)} (each may be gzipped, '.gz') from {DATA_FILES[name]['url']} "
             f"into {candidates[0][0]}"]
    raise FileNotFoundError(f"{name}: the data files were not found. Looked in: {looked} (set IAI_DATA to look "
                            f"in $IAI_DATA/{name} first). Get them by " + ", or by ".join(ways)
                            + ". Nothing falls back to other data.")


# --- loading -------------------------------------------------------------------------------------------------------

def _grey_levels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def load_mnist(root=None, *, name: str = "mnist", download: bool = False, binarize: str = "threshold",
               seed: int = 0, verify: bool = True, device=None, dtype=torch.float32) -> Dataset:
    """Binarized MNIST or Fashion-MNIST (``name``), binarized as in ``BINARIZATIONS``.

    root: folder holding the files (IDX files ``.gz`` or unpacked, or the ``.amat`` files for
    ``binarize='static'``); default: the first of ``$IAI_DATA/<name>``, ``~/.cache/iai_core/<name>`` and
    Debian's folder that holds them all (``<name>`` is ``binarized_mnist`` for the static files).
    download: fetch missing files into ``root``, ``$IAI_DATA/<name>`` or the cache; otherwise a
    missing file raises ``FileNotFoundError`` that says where it looked and how to get the files.
    seed: the fixed draw of the test set under ``'dynamic'`` (shifted by ``IAI_SEED_OFFSET``).
    verify: check each file's decompressed SHA-256 (skipped under ``IAI_SMOKE=1``).
    """
    if name not in ("mnist", "fashion_mnist"):
        raise ValueError(f"name must be 'mnist' or 'fashion_mnist', got {name!r}")
    if binarize not in BINARIZATIONS:
        raise ValueError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
    if binarize == "static" and name != "mnist":
        raise ValueError(f"binarize='static' is Larochelle's statically binarized MNIST; name must be 'mnist', "
                         f"got {name!r}")
    check_seed("seed", seed)
    files = "binarized_mnist" if binarize == "static" else name
    folder, paths = _locate(files, root, download)
    hashes = DATA_FILES[files]["sha256"] if verify and not smoke() else {}
    n_train, n_test = SMOKE_EXAMPLES
    if binarize == "static":
        xtr, xva, xte = _cap(*[(read_amat(paths[f], hashes.get(f)), n) for f, n in zip(
            ("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat"),
            (n_train, n_test, n_test))])
        side = int(round(np.sqrt(xtr.shape[1])))
        return Dataset(_tensor(xtr, dtype, device), _tensor(xte, dtype, device), None, None, (side, side), name,
                       binarize, _tensor(xva, dtype, device), str(folder))
    arrays = {f: read_idx(p, hashes.get(f)) for f, p in paths.items()}
    for split in ("train", "t10k"):
        n_img, n_lab = len(arrays[f"{split}-images-idx3-ubyte"]), len(arrays[f"{split}-labels-idx1-ubyte"])
        if n_img != n_lab:
            raise ValueError(f"{name} in {folder}: {split} has {n_img} images but {n_lab} labels")
    imgs_tr, labs_tr, imgs_te, labs_te = _cap(*[(arrays[f], n) for f, n in zip(_IDX, (n_train,) * 2 + (n_test,) * 2)])
    if binarize == "threshold":   # grey >= 0.5, i.e. byte >= 128 (UIVI's x/255 > 0.5 gives the same bits)
        xtr, xte = (imgs_tr.reshape(len(imgs_tr), -1) >= 128), (imgs_te.reshape(len(imgs_te), -1) >= 128)
    else:                         # 'dynamic': grey levels for training, one seeded draw for the test set
        xtr = _grey_levels(imgs_tr)
        xte = dynamic_binarize(torch.from_numpy(_grey_levels(imgs_te)), make_generator(seed)).numpy()
    shape = tuple(int(d) for d in imgs_tr.shape[1:])
    return Dataset(_tensor(xtr, dtype, device), _tensor(xte, dtype, device), _tensor(labs_tr, torch.int64, device),
                   _tensor(labs_te, torch.int64, device), shape, name, binarize, None, str(folder))


_DIGITS_KWARGS = ("n_test", "seed", "device", "dtype", "download")
_MNIST_KWARGS = ("root", "download", "binarize", "seed", "verify", "device", "dtype")


def load_dataset(name: str = "digits", **kwargs) -> Dataset:
    """One switch for every notebook: ``'digits'`` (embedded), ``'mnist'`` or ``'fashion_mnist'``.

    Keyword arguments go to ``load_digits`` or ``load_mnist``; one that the loader does not take
    raises ``TypeError``. ``download`` is accepted for the digits too (they ship with the package),
    so one call serves every name.
    """
    if name not in ("digits", "mnist", "fashion_mnist"):
        raise ValueError(f"name must be one of 'digits', 'mnist', 'fashion_mnist', got {name!r}")
    allowed = _DIGITS_KWARGS if name == "digits" else _MNIST_KWARGS
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"load_dataset({name!r}) got unexpected keyword argument(s) {unknown}; "
                        f"it accepts {', '.join(allowed)}")
    if name == "digits":
        kwargs.pop("download", None)
        return load_digits(**kwargs)
    return load_mnist(name=name, **kwargs)


# --- synthetic files for tests ---------------------------------------------------------------------------------------

def _synthetic_images(n: int, rng: np.random.Generator, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """(n, side, side) uint8 images of blurred strokes (grey edges, dark background, a bright core)
    and (n,) labels 0-9; each label has its own stroke positions, so the classes differ."""
    labels = (np.arange(n) % 10)[rng.permutation(n)].astype(np.uint8)
    anchors = np.random.default_rng(12345).uniform(8, side - 8, size=(10, 4, 2))       # 4 stroke points per class
    points = anchors[labels] + rng.normal(0, 1.5, size=(n, 4, 2))
    t = np.linspace(0, 1, 8)[:, None]                                                  # 8 dots per segment
    dots = (points[:, :-1, None] * (1 - t) + points[:, 1:, None] * t).reshape(n, -1, 2)
    g = np.exp(-(np.arange(side)[None, None, :] - dots[..., None]) ** 2 / (2 * 1.2 ** 2))   # (n, dots, 2, side)
    ink = 1 - np.exp(-np.einsum("nki,nkj->nij", g[:, :, 0], g[:, :, 1]))    # Gaussian dots, saturating, in [0, 1)
    return np.round(255 * np.clip(1.3 * ink, 0, 1)).astype(np.uint8), labels


def write_synthetic_data(root, *, n_train: int = SMOKE_EXAMPLES[0], n_test: int = SMOKE_EXAMPLES[1], seed: int = 0,
                         gz: bool = True) -> Path:
    """Write small synthetic stand-ins for MNIST, Fashion-MNIST and static MNIST into
    ``root/mnist``, ``root/fashion_mnist`` and ``root/binarized_mnist`` (the layout of ``$IAI_DATA``).

    28x28 grey-level strokes in the standard IDX files (gzipped when ``gz``) and ``.amat`` files
    (one seeded Bernoulli draw of the strokes; ``n_test`` validation images). They fail the content
    check, so load them under ``IAI_SMOKE=1`` or with ``verify=False``. Returns ``root``.
    """
    check_positive("n_train", n_train, integer=True)
    check_positive("n_test", n_test, integer=True)
    check_seed("seed", seed)
    rng = np.random.default_rng(offset_seed(seed))
    root, ext = Path(root), ".gz" if gz else ""
    for name in ("mnist", "fashion_mnist"):
        for split, n in (("train", n_train), ("t10k", n_test)):
            images, labels = _synthetic_images(n, rng)
            write_idx(root / name / f"{split}-images-idx3-ubyte{ext}", images)
            write_idx(root / name / f"{split}-labels-idx1-ubyte{ext}", labels)
    for split, n in (("train", n_train), ("valid", n_test), ("test", n_test)):
        grey = _grey_levels(_synthetic_images(n, rng)[0])
        write_amat(root / "binarized_mnist" / f"binarized_mnist_{split}.amat{ext}", rng.random(grey.shape) < grey)
    return root
