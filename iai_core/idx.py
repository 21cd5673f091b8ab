"""Data files: IDX (MNIST, Fashion-MNIST) and Larochelle's ``.amat`` text files; read, write, verify.

A file is identified by the SHA-256 of its *decompressed* content, not of the bytes on disk: the
same images gzipped by their authors, re-gzipped (as Debian does) or unpacked all pass, and a
corrupt copy fails with an error that names the file, the expected and the found hash.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "write_idx", "read_amat", "write_amat", "content_sha256"]

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "the IDX file format")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v): k for k, v in _IDX_DTYPES.items()}


def _content(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as e:  # bad header, bad CRC, truncated stream
        raise ValueError(f"{path} cannot be decompressed ({e}): the file is corrupt; delete it and get it "
                         f"again") from None


def _verified(path: Path, sha256: str | None) -> bytes:
    data = _content(path)
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise ValueError(f"{path}: the SHA-256 of its decompressed content is {found}, expected {sha256}: "
                             f"the file is corrupt or not the original; delete it and get it again")
    return data


def content_sha256(path) -> str:
    """SHA-256 (hex) of the decompressed content of ``path`` (``.gz`` files are gunzipped first)."""
    return hashlib.sha256(_content(Path(path))).hexdigest()


def read_idx(path, sha256: str | None = None) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``) into an array of its stored shape.

    With ``sha256``, the decompressed content must have that hash (else ``ValueError``).
    """
    path = Path(path)
    data = _verified(path, sha256)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header is cut short")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    n_bytes = len(data) - 4 - 4 * ndim
    if n_bytes != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path} is truncated or padded: header says shape {dims}, "
                         f"found {n_bytes // dtype.itemsize} values")
    return np.frombuffer(bytearray(data), dtype=dtype, offset=4 + 4 * ndim).reshape(dims)   # writable


def write_idx(path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``); returns the path.

    dtypes: uint8, int8, int16, int32, float32, float64 (stored big-endian, as IDX wants); any
    other dtype raises ``TypeError``.
    """
    path, array = Path(path), np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype)
    if code is None:
        raise TypeError(f"array must have an IDX dtype (uint8, int8, int16, int32, float32, float64), "
                        f"got {array.dtype}")
    body = np.ascontiguousarray(array, dtype=np.dtype(_IDX_DTYPES[code]))
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + body.tobytes()
    _write(path, raw)
    return path


def _write(path: Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(raw)   # mtime=0 and no file name: the same array always gives the same bytes
    else:
        path.write_bytes(raw)


def read_amat(path, sha256: str | None = None) -> np.ndarray:
    """Read a binarized ``.amat`` file (one image per line, pixels ``0``/``1`` separated by spaces).

    Returns (n, D) uint8. This is the format of the statically binarized MNIST of Larochelle &
    Murray (2011). With ``sha256``, the decompressed content must have that hash.
    """
    path = Path(path)
    buf = np.frombuffer(_verified(path, sha256), dtype=np.uint8)
    is_bit = (buf == ord("0")) | (buf == ord("1"))
    is_space = np.isin(buf, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    if not (is_bit | is_space).all() or (is_bit[1:] & is_bit[:-1]).any():
        raise ValueError(f"{path} is not a binarized .amat file: expected 0s and 1s separated by spaces")
    ends = np.flatnonzero(buf == ord("\n"))
    if len(buf) and buf[-1] != ord("\n"):
        ends = np.append(ends, len(buf) - 1)
    per_line = np.diff(np.concatenate([[0], np.cumsum(is_bit)[ends]]))
    per_line = per_line[per_line > 0]                               # blank lines carry no image
    if len(per_line) == 0 or (per_line != per_line[0]).any():
        raise ValueError(f"{path}: lines have different numbers of pixels ({sorted(set(per_line.tolist()))})")
    return (buf[is_bit] - ord("0")).reshape(len(per_line), int(per_line[0]))


def write_amat(path, bits: np.ndarray) -> Path:
    """Write (n, D) 0/1 values as an ``.amat`` file (gzipped when the name ends in ``.gz``)."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or not np.isin(bits, (0, 1)).all():
        raise ValueError(f"bits must be a 2-D array of 0s and 1s, got shape {bits.shape}")
    lines = np.full((bits.shape[0], 2 * bits.shape[1]), ord(" "), dtype=np.uint8)
    lines[:, 0::2] = bits.astype(np.uint8) + ord("0")
    lines[:, -1] = ord("\n")
    path = Path(path)
    _write(path, lines.tobytes())
    return path
