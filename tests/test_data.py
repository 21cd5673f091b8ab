import gzip
import inspect
import io
import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

import iai_core.data as data_mod
from iai_core import (dynamic_binarize, load_dataset, load_digits, load_mnist, make_generator, read_idx, write_idx,
                      write_synthetic_data)
from iai_core.env import SMOKE_EXAMPLES
from iai_core.idx import content_sha256, read_amat, write_amat

IDX = data_mod._IDX
DEBIAN_FASHION = data_mod.DEBIAN_FOLDERS["fashion_mnist"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the real cache, $IAI_DATA, Debian's folder or the smoke switch unless it says so."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IAI_DATA", raising=False)
    monkeypatch.delenv("IAI_SMOKE", raising=False)
    monkeypatch.delenv("IAI_SEED_OFFSET", raising=False)
    monkeypatch.setitem(data_mod.DEBIAN_FOLDERS, "fashion_mnist", tmp_path / "debian" / "fashion-mnist")


def _trust(monkeypatch, name, folder):
    """Make the files now in ``folder`` the reference content of ``name`` (synthetic data)."""
    hashes = {f: content_sha256(data_mod._in(folder, f)) for f in data_mod.DATA_FILES[name]["sha256"]}
    monkeypatch.setitem(data_mod.DATA_FILES, name, {**data_mod.DATA_FILES[name], "sha256": hashes})


# --- the embedded digits ----------------------------------------------------------------------------------------

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


# --- IDX and .amat files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
def test_write_then_read_idx(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    back = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", a))
    assert back.dtype.kind == np.dtype(dtype).kind and back.shape == a.shape and np.array_equal(back, a)
    back[0, 0, 0] = 7                                    # the arrays read are writable copies


def test_idx_header_bytes_follow_the_format(tmp_path):
    """Against the layout of LeCun's page: magic 0x00000803, then big-endian sizes, then the bytes."""
    raw = write_idx(tmp_path / "x", np.full((2, 3, 4), 9, np.uint8)).read_bytes()
    assert raw[:16] == bytes.fromhex("00000803 00000002 00000003 00000004") and raw[16:] == bytes([9] * 24)
    ints = read_idx(write_idx(tmp_path / "y", np.array([1, -2, 300], dtype=">i4")))
    assert ints.tolist() == [1, -2, 300]


def test_read_idx_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    full = write_idx(tmp_path / "full", np.zeros((4, 2), dtype=np.uint8)).read_bytes()
    (tmp_path / "short").write_bytes(full[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(TypeError, match="IDX dtype"):
        write_idx(tmp_path / "c", np.zeros(3, dtype=np.int64))


def test_amat_parsing_on_a_handwritten_file(tmp_path):
    rows = ["0 1 1 0", "1 1 1 1", "0 0 0 1"]
    (tmp_path / "a.amat").write_text("\n".join(rows) + "\n")
    expected = np.array([[int(v) for v in r.split()] for r in rows], dtype=np.uint8)
    assert np.array_equal(read_amat(tmp_path / "a.amat"), expected)
    (tmp_path / "b.amat").write_text("\n".join(rows))            # no final newline, same content
    assert np.array_equal(read_amat(tmp_path / "b.amat"), expected)
    assert np.array_equal(read_amat(write_amat(tmp_path / "c.amat.gz", expected)), expected)
    # write_amat's lines are Larochelle's: 784 pixels -> 784 + 783 spaces + newline = 1,568 bytes
    assert len(write_amat(tmp_path / "d.amat", np.ones((2, 784))).read_bytes()) == 2 * 1568


@pytest.mark.parametrize("text, match", [("0 1 2\n", "not a binarized"), ("0 11 0\n", "not a binarized"),
                                         ("0 1 0\n1 1\n", "different numbers of pixels"), ("\n\n", "different")])
def test_amat_bad_files(tmp_path, text, match):
    (tmp_path / "x.amat").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_amat(tmp_path / "x.amat")


# --- the content check --------------------------------------------------------------------------------------------

def test_a_regzipped_copy_passes_the_content_check(tmp_path, monkeypatch):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10) / "mnist"
    _trust(monkeypatch, "mnist", folder)
    path = folder / "train-images-idx3-ubyte.gz"
    before = path.read_bytes()
    content = gzip.decompress(before)
    with open(path, "wb") as fh, gzip.GzipFile("other-name", "wb", compresslevel=1, fileobj=fh, mtime=123) as gz:
        gz.write(content)                                # what Debian did: other .gz bytes, same content
    assert path.read_bytes() != before
    ds = load_mnist(folder)
    assert torch.equal(ds.x_train, torch.as_tensor(read_idx(path).reshape(20, -1) >= 128, dtype=torch.float32))


def test_unpacked_files_pass_the_same_check(tmp_path, monkeypatch):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10) / "mnist"
    _trust(monkeypatch, "mnist", folder)
    gz_data = load_mnist(folder)
    for f in IDX:
        (folder / f).write_bytes(gzip.decompress((folder / (f + ".gz")).read_bytes()))
        (folder / (f + ".gz")).unlink()
    raw_data = load_mnist(folder)
    assert torch.equal(gz_data.x_train, raw_data.x_train) and torch.equal(gz_data.y_test, raw_data.y_test)


def test_a_flipped_byte_is_rejected_with_the_file_and_both_hashes(tmp_path, monkeypatch):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10, gz=False) / "mnist"
    _trust(monkeypatch, "mnist", folder)
    path = folder / "t10k-images-idx3-ubyte"
    expected = content_sha256(path)
    raw = bytearray(path.read_bytes())
    raw[500] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as err:
        load_mnist(folder)
    msg = str(err.value)
    assert str(path) in msg and f"expected {expected}" in msg and f"is {content_sha256(path)}" in msg
    assert load_mnist(folder, verify=False).x_test.shape == (10, 784)   # the caller may opt out


def test_a_flipped_byte_in_a_gzip_file_is_rejected(tmp_path, monkeypatch):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10) / "mnist"
    _trust(monkeypatch, "mnist", folder)
    path = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*corrupt"):
        load_mnist(folder)


def test_synthetic_files_fail_the_real_hashes(tmp_path):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10) / "fashion_mnist"
    with pytest.raises(ValueError, match="expected c59f468a2f672dc8"):
        load_mnist(folder, name="fashion_mnist")


# --- where the files are looked for ------------------------------------------------------------------------------

def test_folder_search_order(tmp_path, monkeypatch):
    """root > $IAI_DATA/<name> > ~/.cache/iai_core/<name> > Debian's folder; an incomplete folder is skipped."""
    places = {"env": tmp_path / "env", "cache": tmp_path / "home" / ".cache" / "iai_core", "deb": tmp_path / "deb",
              "root": tmp_path / "root"}
    for i, (key, place) in enumerate(places.items()):
        write_synthetic_data(place, n_train=10 + i, n_test=5)
    monkeypatch.setitem(data_mod.DEBIAN_FOLDERS, "fashion_mnist", places["deb"] / "fashion_mnist")
    monkeypatch.setenv("IAI_DATA", str(places["env"]))
    load = lambda **kw: load_mnist(name="fashion_mnist", verify=False, **kw)  # noqa: E731
    assert load(root=places["root"] / "fashion_mnist").x_train.shape[0] == 13
    assert load().source == str(places["env"] / "fashion_mnist")
    (places["env"] / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()          # incomplete: skipped
    assert load().source == str(places["cache"] / "fashion_mnist") and load().x_train.shape[0] == 11
    monkeypatch.delenv("IAI_DATA")
    assert load().x_train.shape[0] == 11
    for f in [*(places["cache"] / "fashion_mnist").iterdir(), *(places["cache"] / "mnist").iterdir()]:
        f.unlink()
    assert load().source == str(places["deb"] / "fashion_mnist") and load().x_train.shape[0] == 12
    with pytest.raises(FileNotFoundError):                       # Debian packages Fashion-MNIST only
        load_mnist(name="mnist", verify=False)


def test_offline_error_says_where_it_looked_and_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("IAI_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(name="fashion_mnist")
    msg = str(err.value)
    for part in (tmp_path / "env" / "fashion_mnist", tmp_path / "home" / ".cache" / "iai_core" / "fashion_mnist",
                 data_mod.DEBIAN_FOLDERS["fashion_mnist"], "make data", "apt-get install dataset-fashion-mnist",
                 "download=True", "train-images-idx3-ubyte", data_mod.DATA_FILES["fashion_mnist"]["url"]):
        assert str(part) in msg, part
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path / "empty", binarize="static")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "binarized_mnist_valid.amat" in msg and "apt" not in msg
    assert not (tmp_path / "empty").exists()                   # nothing downloaded, nothing created


def _serve(monkeypatch, folder, name):
    """urlopen replaced by a server of the files in ``folder``; returns the list of URLs asked for."""
    spec, asked = data_mod.DATA_FILES[name], []
    files = {spec["url"] + f + spec["download_suffix"]: (folder / (f + spec["download_suffix"])).read_bytes()
             for f in spec["sha256"]}

    def urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO(files[url])
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", urlopen)
    return asked


@pytest.mark.parametrize("name, binarize", [("mnist", "threshold"), ("mnist", "static")])
def test_download_only_when_asked_into_iai_data(tmp_path, monkeypatch, name, binarize):
    files = "binarized_mnist" if binarize == "static" else name
    source = write_synthetic_data(tmp_path / "server", n_train=12, n_test=6, gz=binarize != "static") / files
    _trust(monkeypatch, files, source)
    asked = _serve(monkeypatch, source, files)
    monkeypatch.setenv("IAI_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError):
        load_mnist(name=name, binarize=binarize)
    assert asked == []
    ds = load_mnist(name=name, binarize=binarize, download=True)
    assert len(asked) == len(data_mod.DATA_FILES[files]["sha256"]) and ds.x_train.shape == (12, 784)
    assert ds.source == str(tmp_path / "env" / files) and not list((tmp_path / "env").rglob("*.part"))
    load_mnist(name=name, binarize=binarize, download=True)
    assert len(asked) == len(data_mod.DATA_FILES[files]["sha256"])          # already there: no second download


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="Download the files by hand"):
        load_mnist(tmp_path, name="mnist", download=True)
    assert not any(tmp_path.glob("*.part"))


# --- the binarizations ----------------------------------------------------------------------------------------------

@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    root = write_synthetic_data(tmp_path / "syn", n_train=40, n_test=30)
    for name in ("mnist", "fashion_mnist", "binarized_mnist"):
        _trust(monkeypatch, name, root / name)
    return root


def test_threshold_is_exact(synthetic):
    ds = load_mnist(synthetic / "fashion_mnist", name="fashion_mnist")
    grey = read_idx(synthetic / "fashion_mnist" / "train-images-idx3-ubyte.gz").reshape(40, -1) / 255.0
    assert ds.binarize == "threshold" and ds.transform is None and ds.image_shape == (28, 28)
    assert torch.equal(ds.x_train, torch.as_tensor(grey >= 0.5, dtype=torch.float32))
    assert torch.equal(ds.x_train, torch.as_tensor(grey > 0.5, dtype=torch.float32))   # UIVI's "> 0.5": same bits
    labels = read_idx(synthetic / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz")
    assert torch.equal(ds.y_test, torch.as_tensor(labels, dtype=torch.int64))


def test_threshold_at_every_byte_value(tmp_path):
    """Every grey level 0..255 once: the pixels >= 0.5 are exactly the bytes >= 128."""
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.array([3], dtype=np.uint8))
    ds = load_mnist(tmp_path, verify=False)
    assert ds.image_shape == (16, 16) and ds.x_train.flatten().tolist() == [float(v >= 128) for v in range(256)]


def test_dynamic_keeps_training_grey_levels_and_draws_the_test_set_once(synthetic, monkeypatch):
    ds = load_mnist(synthetic / "mnist", binarize="dynamic", seed=3)
    grey = read_idx(synthetic / "mnist" / "train-images-idx3-ubyte.gz").reshape(40, -1) / 255.0
    assert ds.binarize == "dynamic" and ds.transform is dynamic_binarize
    assert torch.allclose(ds.x_train, torch.as_tensor(grey, dtype=torch.float32))
    assert set(ds.x_test.unique().tolist()) == {0.0, 1.0}
    again, other = (load_mnist(synthetic / "mnist", binarize="dynamic", seed=s) for s in (3, 4))
    assert torch.equal(ds.x_test, again.x_test) and not torch.equal(ds.x_test, other.x_test)
    monkeypatch.setenv("IAI_SEED_OFFSET", "1")                           # the seed sweep shifts the draw
    assert torch.equal(load_mnist(synthetic / "mnist", binarize="dynamic", seed=3).x_test, other.x_test)


def test_dynamic_binarize_is_a_seeded_bernoulli_draw(device, dtype):
    p = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9, 1.0], dtype=dtype, device=device).repeat(20000, 1)
    x = dynamic_binarize(p, make_generator(0, device))
    assert x.dtype == dtype and x.device.type == device.type and set(x.unique().tolist()) == {0.0, 1.0}
    se = (p[0] * (1 - p[0]) / len(p)).sqrt()
    assert ((x.mean(0) - p[0]).abs() <= 4 * se + 1e-12).all()
    assert torch.equal(x, dynamic_binarize(p, make_generator(0, device)))
    assert not torch.equal(x, dynamic_binarize(p, make_generator(1, device)))


def test_dynamic_binarize_bad_arguments():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        dynamic_binarize(np.ones((2, 3)))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        dynamic_binarize(torch.ones(2, 3), generator=0)


def test_static_reads_the_amat_files(synthetic):
    ds = load_mnist(synthetic / "binarized_mnist", binarize="static")
    folder = synthetic / "binarized_mnist"
    for split, x in (("train", ds.x_train), ("valid", ds.x_valid), ("test", ds.x_test)):
        lines = gzip.decompress((folder / f"binarized_mnist_{split}.amat.gz").read_bytes()).decode().splitlines()
        assert x.tolist() == [[float(v) for v in line.split()] for line in lines]
    assert ds.x_train.shape == (40, 784) and ds.x_valid.shape == ds.x_test.shape == (30, 784)
    assert ds.y_train is None and ds.y_test is None and ds.image_shape == (28, 28) and ds.transform is None


def test_bad_arguments(synthetic):
    with pytest.raises(ValueError, match="name must be 'mnist' or 'fashion_mnist'"):
        load_mnist(synthetic, name="cifar")
    with pytest.raises(ValueError, match="binarize must be one of .*'dynamic'.*got 'sample'"):
        load_mnist(synthetic / "mnist", binarize="sample")
    with pytest.raises(ValueError, match="name must be 'mnist', got 'fashion_mnist'"):
        load_mnist(synthetic / "binarized_mnist", name="fashion_mnist", binarize="static")
    with pytest.raises(TypeError, match="seed must be an int"):
        load_mnist(synthetic / "mnist", seed=1.5)


def test_images_and_labels_must_agree(tmp_path, monkeypatch):
    folder = write_synthetic_data(tmp_path / "d", n_train=20, n_test=10) / "mnist"
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match="t10k has 10 images but 9 labels"):
        load_mnist(folder, verify=False)


def test_device_and_dtype(synthetic, device):
    ds = load_mnist(synthetic / "mnist", binarize="dynamic", device=device, dtype=torch.float64)
    assert all(t.device.type == device.type for t in (ds.x_train, ds.x_test, ds.y_train, ds.y_test))
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float64 and ds.y_train.dtype == torch.int64
    st = load_mnist(synthetic / "binarized_mnist", binarize="static").to(device, torch.float64)
    assert st.x_valid.dtype == torch.float64 and st.x_valid.device.type == device.type and st.y_train is None


# --- load_dataset, smoke mode, synthetic data ----------------------------------------------------------------------

def test_load_dataset_refuses_unknown_keyword_arguments(synthetic):
    with pytest.raises(TypeError, match=r"load_dataset\('digits'\) got unexpected keyword argument\(s\) "
                                        r"\['binarise'\]; it accepts n_test, seed"):
        load_dataset("digits", binarise="threshold")
    with pytest.raises(TypeError, match=r"\['n_tset'\].*root, download, binarize"):
        load_dataset("mnist", n_tset=5)
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("cifar")
    assert load_dataset("digits", download=False).x_train.shape == (1500, 64)   # one call serves every name
    signature = lambda f: set(inspect.signature(f).parameters)  # noqa: E731
    assert set(data_mod._MNIST_KWARGS) == signature(load_mnist) - {"name"}
    assert set(data_mod._DIGITS_KWARGS) == signature(load_digits) | {"download"}
    assert load_dataset("mnist", root=synthetic / "mnist", binarize="dynamic").binarize == "dynamic"


def test_smoke_mode_caps_every_loader_and_skips_the_check(tmp_path, monkeypatch):
    n_train, n_test = SMOKE_EXAMPLES
    write_synthetic_data(tmp_path / "syn", n_train=n_train + 20, n_test=n_test + 10)   # real hashes: would fail
    monkeypatch.setenv("IAI_DATA", str(tmp_path / "syn"))
    monkeypatch.setenv("IAI_SMOKE", "1")
    for kw in ({"name": "digits"}, {"name": "mnist"}, {"name": "fashion_mnist", "binarize": "dynamic"},
               {"name": "mnist", "binarize": "static"}):
        ds = load_dataset(**kw)
        assert len(ds.x_train) == n_train and len(ds.x_test) == n_test, kw
        assert ds.y_train is None or len(ds.y_train) == n_train
    assert len(load_dataset("mnist", binarize="static").x_valid) == n_test
    monkeypatch.delenv("IAI_SMOKE")
    with pytest.raises(ValueError, match="SHA-256"):
        load_dataset("mnist")


def test_synthetic_data_gives_0s_and_1s_under_every_binarization(tmp_path, monkeypatch):
    root = write_synthetic_data(tmp_path, n_train=50, n_test=20, seed=1)
    grey = read_idx(root / "mnist" / "train-images-idx3-ubyte.gz")
    labels = read_idx(root / "mnist" / "train-labels-idx1-ubyte.gz")
    assert grey.shape == (50, 28, 28) and 0.05 < (grey > 0).mean() < 0.6            # strokes on a dark background
    assert ((grey > 0) & (grey < 255)).mean() > 0.02 and (grey == 255).any()          # grey edges, a bright core
    assert sorted(np.bincount(labels, minlength=10).tolist()) == [5] * 10
    for binarize in ("threshold", "dynamic", "static"):
        ds = load_mnist(root / ("binarized_mnist" if binarize == "static" else "mnist"), binarize=binarize,
                        verify=False)
        x_train = ds.transform(ds.x_train, make_generator(0)) if ds.transform else ds.x_train
        for x in (x_train, ds.x_test):
            assert set(x.unique().tolist()) == {0.0, 1.0}, binarize
            assert 0.02 < x.mean() < 0.6, binarize
    same = write_synthetic_data(tmp_path / "again", n_train=50, n_test=20, seed=1)
    assert (same / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes() == \
        (root / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()


# --- the real data, where it is installed --------------------------------------------------------------------------

@pytest.mark.skipif(not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (make data)")
def test_debians_fashion_mnist_passes_the_content_check(monkeypatch):
    monkeypatch.setitem(data_mod.DEBIAN_FOLDERS, "fashion_mnist", DEBIAN_FASHION)
    ds = load_mnist(name="fashion_mnist", binarize="dynamic")           # found by the default search
    assert ds.source == str(DEBIAN_FASHION)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784) and ds.image_shape == (28, 28)
    assert round(float(ds.x_train.double().mean()), 4) == 0.2860                     # as published
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10 and torch.bincount(ds.y_test).tolist() == [1000] * 10
