import pickle

import numpy as np
import pytest

from qhw.errors import InputError
from qhw.quant.data import (
    load_cifar10,
    load_dataset,
    load_digits_dataset,
    read_cifar_batch,
    synthetic_dataset,
    write_cifar_batch,
)


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def test_cifar_reader_on_a_generated_tiny_dataset(tmp_path):
    a, b, t = _images(3, 0), _images(2, 1), _images(4, 2)
    write_cifar_batch(tmp_path / "data_batch_1", a, [0, 1, 2])
    write_cifar_batch(tmp_path / "data_batch_2", b, [9, 8])
    write_cifar_batch(tmp_path / "test_batch", t, [5, 5, 6, 7])
    ds = load_cifar10(tmp_path)
    assert ds.shape == (3, 32, 32) and ds.num_classes == 10
    assert np.array_equal(ds.x_train, np.concatenate([a, b])) and ds.y_train.tolist() == [0, 1, 2, 9, 8]
    assert np.array_equal(ds.x_test, t) and ds.y_test.tolist() == [5, 5, 6, 7]
    # channel-major rows of 1024 pixels, as in the CIFAR-10 python format
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes(), encoding="bytes")
    assert raw[b"data"].shape == (3, 3072) and np.array_equal(raw[b"data"][1, 1024:2048], a[1, 1].ravel())
    x, y = ds.float_images("test")
    assert x.dtype.is_floating_point and float(x.max()) <= 1.0
    assert np.array_equal(np.floor(x.numpy() * 255 + 0.5).astype(np.uint8), t)


def test_cifar_subfolder_is_found(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    write_cifar_batch(sub / "data_batch_1", _images(1, 0), [3])
    write_cifar_batch(sub / "test_batch", _images(1, 1), [4])
    assert load_dataset("cifar10", tmp_path).y_test.tolist() == [4]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x80\x02garbage", "is not a valid pickle batch"),
        (pickle.dumps(_Evil(), protocol=2), "refusing to load"),
        (pickle.dumps([1, 2], protocol=2), "expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2), "data must be uint8 (N, 3072)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, protocol=2), "labels must be N integers in 0..9"),
        (pickle.dumps({b"labels": [0]}, protocol=2), "missing 'data' or 'labels'"),
    ],
)
def test_bad_cifar_batches_raise_input_error(tmp_path, payload, message):
    p = tmp_path / "data_batch_1"
    p.write_bytes(payload)
    with pytest.raises(InputError) as exc:
        read_cifar_batch(p)
    assert message in str(exc.value)


def test_missing_cifar_directory_or_batches(tmp_path):
    with pytest.raises(InputError, match="CIFAR-10 directory not found"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(InputError, match="does not hold CIFAR-10 python batches"):
        load_cifar10(tmp_path)
    with pytest.raises(InputError, match="needs a directory"):
        load_dataset("cifar10")
    with pytest.raises(InputError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_digits_split_is_fixed_and_codes_are_8_bit():
    a, b = load_digits_dataset(), load_digits_dataset()
    assert (len(a.y_train), len(a.y_test)) == (1438, 359)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (1, 8, 8)
    assert a.x_train.max() == 255 and set(np.unique(a.x_train)) <= {int(v * 255 / 16 + 0.5) for v in range(17)}
    assert sorted(set(a.y_test.tolist())) == list(range(10))


def test_synthetic_is_seeded_and_shaped():
    a = synthetic_dataset((3, 32, 32), n_train=20, n_test=10, seed=3)
    b = synthetic_dataset((3, 32, 32), n_train=20, n_test=10, seed=3)
    c = synthetic_dataset((3, 32, 32), n_train=20, n_test=10, seed=4)
    assert a.x_train.shape == (20, 3, 32, 32) and a.x_test.shape == (10, 3, 32, 32)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    assert synthetic_dataset((1, 8, 8), n_train=4, n_test=2).shape == (1, 8, 8)
