"""Image datasets as unsigned 8-bit pixel codes.

Every dataset holds ``uint8`` codes (N, C, H, W) and int64 labels; the float
network input is ``codes / 255`` (:meth:`ImageDataset.float_images`), which
:class:`~qhw.quant.quantizers.InputQuant` maps back to the same codes, so the
integer model reads exactly the codes stored here.

``digits``     scikit-learn's bundled 8x8 digits (1797 images, values 0..16
               mapped to round(v * 255 / 16)); fixed train/test split (seed 0)
``cifar10``    CIFAR-10 "python version" batches from a local directory
               (``data_batch_1..5``, ``test_batch``), read with a restricted
               unpickler that only builds numpy arrays
``synthetic``  seeded class templates plus noise, any shape (fast tests)
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qhw.errors import InputError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class ImageDataset:
    name: str
    x_train: np.ndarray  # uint8 (N, C, H, W)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def float_images(self, split: str):
        """(float32 torch images codes / 255, int64 torch labels)."""
        import torch

        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "classes": self.num_classes,
        }


def _split(x, y, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load_digits_dataset() -> ImageDataset:
    """The 8x8 digits, 1438 train / 359 test, split fixed by seed 0."""
    from sklearn.datasets import load_digits

    d = load_digits()
    codes = np.floor(d.images * (255.0 / 16.0) + 0.5).astype(np.uint8)[:, None]
    xtr, ytr, xte, yte = _split(codes, d.target.astype(np.int64), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return ImageDataset("digits", xtr, ytr, xte, yte, 10)


class _ArrayUnpickler(pickle.Unpickler):
    """Builds only numpy arrays and plain containers; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # protocol-2 pickles from Python 3 store bytes this way
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name in ("_reconstruct", "scalar"):
            # numpy.core is a deprecated alias of numpy._core; go there directly
            from numpy._core import multiarray

            return getattr(multiarray, name)
        return getattr(np, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file -> (uint8 (N, 3, 32, 32), int64 labels)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except OSError as exc:
        raise InputError(f"cannot read CIFAR-10 batch {path}: {exc.strerror}") from None
    except Exception as exc:  # any unpickling failure means a bad file
        raise InputError(f"CIFAR-10 batch {path} is not a valid pickle batch: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"CIFAR-10 batch {path}: expected a dict, got {type(doc).__name__}")
    doc = {k.decode() if isinstance(k, bytes) else k: v for k, v in doc.items()}
    if "data" not in doc or "labels" not in doc:
        raise InputError(f"CIFAR-10 batch {path}: missing 'data' or 'labels'")
    data = np.asarray(doc["data"])
    labels = np.asarray(doc["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise InputError(f"CIFAR-10 batch {path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or labels.size and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"CIFAR-10 batch {path}: labels must be N integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def write_cifar_batch(path: str | Path, images: np.ndarray, labels) -> Path:
    """Write uint8 (N, 3, 32, 32) images as a CIFAR-10 python batch (for tests)."""
    from qhw.fileio import atomic_write_bytes

    images = np.asarray(images, dtype=np.uint8)
    doc = {
        b"batch_label": b"qhw generated batch",
        b"labels": [int(v) for v in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    return atomic_write_bytes(path, pickle.dumps(doc, protocol=2))


def load_cifar10(directory: str | Path) -> ImageDataset:
    """CIFAR-10 from ``directory`` (or its ``cifar-10-batches-py`` subfolder)."""
    root = Path(directory)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise InputError(f"CIFAR-10 directory not found: {directory}")
    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"
    if not train_files or not test_file.is_file():
        raise InputError(f"{root} does not hold CIFAR-10 python batches (data_batch_1..5 and test_batch)")
    parts = [read_cifar_batch(p) for p in train_files]
    xte, yte = read_cifar_batch(test_file)
    return ImageDataset(
        "cifar10",
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        xte,
        yte,
        10,
    )


def synthetic_dataset(
    shape: tuple[int, int, int] = (3, 32, 32),
    *,
    n_train: int = 512,
    n_test: int = 128,
    num_classes: int = 10,
    noise: float = 0.25,
    seed: int = 0,
) -> ImageDataset:
    """Learnable random images: a smooth template per class plus pixel noise."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, size=(num_classes, c, max(1, h // 4), max(1, w // 4)))
    templates = np.kron(coarse, np.ones((1, 1, 4, 4)))[:, :, :h, :w]
    templates = np.pad(templates, ((0, 0), (0, 0), (0, h - templates.shape[2]), (0, w - templates.shape[3])), "edge")

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = templates[y] + rng.normal(0.0, noise, size=(n, c, h, w))
        return np.floor(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8), y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return ImageDataset("synthetic", xtr, ytr, xte, yte, num_classes)


DATASETS = ("digits", "cifar10", "synthetic")


def load_dataset(name: str, path: str | Path | None = None, *, shape=None, seed: int = 0, **kwargs) -> ImageDataset:
    """Dataset by name; ``path`` for cifar10, ``shape`` for synthetic."""
    if name == "digits":
        return load_digits_dataset()
    if name == "cifar10":
        if path is None:
            raise InputError("the cifar10 dataset needs a directory (--data DIR) holding the python batches")
        return load_cifar10(path)
    if name == "synthetic":
        return synthetic_dataset(tuple(shape) if shape else (3, 32, 32), seed=seed, **kwargs)
    raise InputError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
