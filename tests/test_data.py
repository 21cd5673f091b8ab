import gzip
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

import iai_core.data as data_mod
from iai_core import load_dataset, load_digits, load_mnist, read_idx


def test_digits_equal_sklearn_thresholded_at_8():
    sk = sk_load_digits()
    ds = load_digits(seed=0)
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    assert ds.x_train.shape == (1500, 64) and ds.x_test.shape == (297, 64) and ds.image_shape == (8, 8)
    ref = torch.as_tensor((sk.data >= 8).astype(np.float32))
    # the split is a permutation: sort both sets of (image, label) rows and compare
    key = lambda a, b: sorted(map(tuple, torch.cat([a, b[:, None].float()], 1).tolist()))  # noqa: E731
    assert key(x, y) == key(ref, torch.as_tensor(sk.target))


def test_digits_split_is_seeded(device):
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    d = load_digits(n_test=97, device=device, dtype=torch.float64)
    assert d.x_test.shape == (97, 64) and d.x_train.device.type == device.type and d.x_train.dtype == torch.float64
    assert load_dataset("digits", n_test=97).x_test.shape == (97, 64)


@pytest.mark.parametrize("n_test, exc", [(0, ValueError), (1797, ValueError), (2.5, TypeError)])
def test_digits_bad_n_test(n_test, exc):
    with pytest.raises(exc, match="n_test"):
        load_digits(n_test=n_test)


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def _write(path, array, gz):
    raw = _idx_bytes(array)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def test_read_idx_raw_and_gzipped(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([1, -2, 300], dtype=">i4")
    _write(tmp_path / "a-idx3-ubyte", imgs, gz=False)
    _write(tmp_path / "a-idx3-ubyte.gz", imgs, gz=True)
    _write(tmp_path / "b-idx1", ints, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), imgs)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), imgs)
    assert np.array_equal(read_idx(tmp_path / "b-idx1"), ints)


def test_read_idx_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    short = _idx_bytes(np.zeros((4, 2), dtype=np.uint8))[:-3]
    (tmp_path / "short").write_bytes(short)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def _fake_mnist(root, gz, rng):
    """Four tiny IDX files in MNIST's layout: 5 training and 3 test images of 4x4."""
    files = {}
    for split, n in (("train", 5), ("t10k", 3)):
        imgs = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr in (("images-idx3", imgs), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte.gz"
            path = root / (name if gz else name[:-3])
            _write(path, arr, gz)
            files[name] = (path, arr)
    return files


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_mnist_from_tiny_idx_files(tmp_path, monkeypatch, gz):
    files = _fake_mnist(tmp_path, gz, np.random.default_rng(0))
    md5 = {name: data_mod._md5(path) for name, (path, _) in files.items()}
    monkeypatch.setitem(data_mod.IDX_FILES, "mnist", {"url": "https://example.invalid/", "md5": md5})
    ds = load_mnist(tmp_path, name="mnist")
    imgs = files["train-images-idx3-ubyte.gz"][1]
    assert ds.x_train.shape == (5, 16) and ds.x_test.shape == (3, 16) and ds.image_shape == (4, 4)
    assert torch.equal(ds.x_train, torch.as_tensor((imgs.reshape(5, -1) >= 128).astype(np.float32)))
    assert torch.equal(ds.y_test, torch.as_tensor(files["t10k-labels-idx1-ubyte.gz"][1].astype(np.int64)))
    sampled = load_mnist(tmp_path, name="mnist", binarize="sample", seed=3)
    again = load_mnist(tmp_path, name="mnist", binarize="sample", seed=3)
    assert torch.equal(sampled.x_train, again.x_train) and set(sampled.x_train.unique().tolist()) <= {0.0, 1.0}
    assert load_dataset("mnist", root=tmp_path).x_train.shape == (5, 16)


def test_load_mnist_rejects_a_corrupt_file(tmp_path, monkeypatch):
    files = _fake_mnist(tmp_path, True, np.random.default_rng(1))
    md5 = {name: data_mod._md5(path) for name, (path, _) in files.items()}
    md5["t10k-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setitem(data_mod.IDX_FILES, "mnist", {"url": "https://example.invalid/", "md5": md5})
    with pytest.raises(ValueError, match="MD5"):
        load_mnist(tmp_path, name="mnist")
    assert load_mnist(tmp_path, name="mnist", verify=False).x_test.shape == (3, 16)


def test_load_mnist_offline_error_says_how_to_get_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path / "empty", name="fashion_mnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "download=True" in msg and str(tmp_path / "empty") in msg
    assert data_mod.IDX_FILES["fashion_mnist"]["url"] in msg


def test_load_mnist_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="Download the files by hand"):
        load_mnist(tmp_path, name="mnist", download=True)
    assert not any(tmp_path.glob("*.part"))


def test_load_mnist_bad_arguments(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="name must be one of"):
        load_mnist(tmp_path, name="cifar")
    files = _fake_mnist(tmp_path, True, np.random.default_rng(2))
    md5 = {name: data_mod._md5(path) for name, (path, _) in files.items()}
    monkeypatch.setitem(data_mod.IDX_FILES, "mnist", {"url": "https://example.invalid/", "md5": md5})
    with pytest.raises(ValueError, match="binarize must be"):
        load_mnist(tmp_path, name="mnist", binarize="round")
