"""Data loaders: the bundled digits, IDX files and image folders written here, corrupt ones too."""

import gzip
import struct

import numpy as np
import pytest
import torch

from genfast.data import (
    cache_dir,
    find_idx_pair,
    load_dataset,
    load_digits,
    load_idx,
    load_image_folder,
    make_grid,
    read_idx,
    save_image_grid,
    to_uint8,
)


# ------------------------------------------------------------------------------------ digits
def test_digits_split_is_fixed_disjoint_and_stratified():
    x, y = load_digits("train")
    xt, yt = load_digits("test")
    assert x.shape == (1437, 1, 8, 8) and xt.shape == (360, 1, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.equal(torch.bincount(yt, minlength=10).clamp(35, 37), torch.bincount(yt, minlength=10))
    xa, _ = load_digits("all")
    assert len(xa) == len(x) + len(xt)
    # disjoint: no test image appears in the train split at the same index set
    flat = {tuple(r.tolist()) for r in x.reshape(len(x), -1)}
    overlap = sum(tuple(r.tolist()) in flat for r in xt.reshape(len(xt), -1))
    assert overlap < 5  # a few digits are pixel-identical duplicates in the UCI data
    x2, y2 = load_digits("train")
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize(
    "kwargs, match", [({"split": "val"}, "split"), ({"test_fraction": 1.5}, "test_fraction")]
)
def test_digits_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits(**kwargs)


# --------------------------------------------------------------------------------------- IDX
def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.tobytes()


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images[:2])))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[:2]))
    return tmp_path, images, labels


def test_idx_plain_and_gzip(mnist_dir):
    d, images, labels = mnist_dir
    x, y = load_idx(d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte.gz")
    assert x.shape == (5, 1, 4, 3) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert y.tolist() == labels.tolist() and y.dtype == torch.int64
    assert read_idx(d / "t10k-images-idx3-ubyte.gz").shape == (2, 4, 3)


def test_idx_pairs_and_load_dataset(mnist_dir):
    d, _, _ = mnist_dir
    assert find_idx_pair(d, "train") == (d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte.gz")
    assert find_idx_pair(d, "test") == (d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte")
    x, y = load_dataset(d, "test")
    assert x.shape == (2, 1, 4, 3) and y.tolist() == [3, 1]
    x, y = load_dataset(d / "train-images-idx3-ubyte")
    assert x.shape == (5, 1, 4, 3) and y is not None


def test_idx_wider_dtype_is_read(tmp_path):
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "a-idx2-int").write_bytes(_idx_bytes(arr))
    out = read_idx(tmp_path / "a-idx2-int")
    assert out.tolist() == arr.tolist() and out.dtype == np.int32


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "bad magic"),
        (b"\x08\x03\x00\x00", "bad magic"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "unknown dtype"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated header"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "trailing bytes"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_idx_corrupt_names_the_file(tmp_path, content, match):
    p = tmp_path / "bad-images-idx3-ubyte"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        read_idx(p)
    assert str(p) in str(err.value)


def test_idx_missing_and_mismatched(mnist_dir, tmp_path):
    d, _, _ = mnist_dir
    with pytest.raises(FileNotFoundError, match="nope-images-idx3-ubyte"):
        load_idx(d / "nope-images-idx3-ubyte")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_idx(d / "train-images-idx3-ubyte", d / "t10k-labels-idx1-ubyte")  # 2 labels, 5 images
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        load_idx(d / "t10k-labels-idx1-ubyte")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no IDX images file"):
        find_idx_pair(empty)


# ------------------------------------------------------------------------------ image folders
def _png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_flat_grey(tmp_path):
    a = np.zeros((6, 5), np.uint8)
    a[2, 3] = 255
    _png(tmp_path / "b.png", a)
    _png(tmp_path / "a.png", np.full((6, 5), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    x, y = load_image_folder(tmp_path)
    assert y is None and x.shape == (2, 1, 6, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((1, 6, 5), 128 / 127.5 - 1), atol=1e-6)  # sorted: a.png first
    assert x[1, 0, 2, 3] == 1.0 and x[1, 0, 0, 0] == -1.0


def test_folder_classes_rgb_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    for cls, k in (("cat", 2), ("dog", 1)):
        for i in range(k):
            _png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(tmp_path / "dog" / "x.jpg")
    x, y = load_image_folder(tmp_path, size=8)
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    x, _ = load_image_folder(tmp_path, size=(4, 6), channels=1)
    assert x.shape == (4, 1, 4, 6)
    x, y = load_dataset(tmp_path, size=8)
    assert x.shape == (4, 3, 8, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no PNG/JPEG"):
        load_image_folder(tmp_path)
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="pass size="):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, size=4, channels=2)
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=0)
    bad = tmp_path / "c.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    with pytest.raises(ValueError, match="c.png"):
        load_image_folder(tmp_path, size=4)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "val")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="file.bin"):
        load_dataset(f)


# ---------------------------------------------------------------------------- grids, cache
def test_grid_and_png(tmp_path):
    imgs = torch.linspace(-1, 1, 5 * 3 * 2 * 2).reshape(5, 3, 2, 2)
    g = make_grid(imgs, nrow=3, padding=1)
    assert g.shape == (3, 2 * 3 + 1, 3 * 3 + 1)
    u = to_uint8(torch.tensor([-1.0, 0.0, 1.0, 7.0]))
    assert u.tolist() == [0, 128, 255, 255] and u.dtype == torch.uint8
    from PIL import Image

    p = save_image_grid(imgs[:, :1], tmp_path / "sub" / "g.png", scale=2)
    with Image.open(p) as im:
        assert im.mode == "L" and im.size == (2 * (3 * 3 + 1), 2 * (2 * 3 + 1))
    with pytest.raises(ValueError, match="images"):
        make_grid(torch.zeros(2, 2, 4, 4))
    with pytest.raises(TypeError, match="images"):
        to_uint8(torch.zeros(2, dtype=torch.uint8))


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "gf"))
    assert cache_dir() == (tmp_path / "gf").resolve() and (tmp_path / "gf").is_dir()
    monkeypatch.delenv("GENFAST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(create=False) == (tmp_path / "xdg" / "genfast").resolve()
