"""Data that would be trained on silently wrong is refused: a training file twice, the test
set equal to a training file, one label for every image, a numbered file left out, a file
that does not match the folder's SHA256SUMS, a file too large to be a CIFAR file."""

import hashlib
import shutil

import pytest
from conftest import SAMPLE
from test_data import cifar10_binary, make_part, raises_naming, write_layout

from netgraph.data.cifar import read_cifar


def test_a_training_file_given_twice(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    shutil.copy(folder / "data_batch_1.bin", folder / "data_batch_3.bin")
    with raises_naming(folder / "data_batch_3.bin", "same file as data_batch_1.bin"):
        read_cifar("cifar10", tmp_path)


def test_the_test_set_equal_to_a_training_file(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    shutil.copy(folder / "data_batch_2.bin", folder / "test_batch.bin")
    with raises_naming(folder / "test_batch.bin", "training file data_batch_2.bin"):
        read_cifar("cifar10", tmp_path)


def test_every_label_the_same(tmp_path):
    images, _ = make_part(6, 10, 0)
    same = (images, [3] * 6)
    write_layout(tmp_path, "cifar10", "binary", [same, (images[:4], [3] * 4)], make_part(4, 10, 1))
    with pytest.raises(Exception, match="every one of the 10 training labels is class 3"):
        read_cifar("cifar10", tmp_path)


def test_a_stray_numbered_file_is_not_left_out(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    shutil.copy(folder / "data_batch_1.bin", folder / "data_batch_12.bin")
    with raises_naming(folder / "data_batch_4.bin", "data_batch_12.bin is there"):
        read_cifar("cifar10", tmp_path)


def test_sha256sums_are_checked_when_present(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    sums = "".join(
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("data_batch_1.bin", "data_batch_2.bin", "test_batch.bin")
    )
    (tmp_path / "SHA256SUMS").write_text(sums)
    assert len(read_cifar("cifar10", tmp_path).train_labels) == 12  # all match
    data = bytearray((folder / "data_batch_2.bin").read_bytes())
    data[100] ^= 1  # one pixel's lowest bit
    (folder / "data_batch_2.bin").write_bytes(bytes(data))
    with raises_naming(folder / "data_batch_2.bin", "SHA-256 is not the one"):
        read_cifar("cifar10", tmp_path)


def test_the_sample_matches_its_sha256sums_as_the_reader_checks_them():
    assert (SAMPLE / "SHA256SUMS").is_file()
    assert len(read_cifar("cifar10", SAMPLE).train_labels) == 2000


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path):
    """The issue's 12 GB data file (whole records of 3,073 bytes), sparse: no disk used, and
    refused before a byte of it is read into memory."""
    folder, _, _ = cifar10_binary(tmp_path)
    with open(folder / "data_batch_2.bin", "r+b") as f:
        f.truncate(12 * 10**9 // 3073 * 3073)
    with raises_naming(folder / "data_batch_2.bin", "more than a CIFAR file"):
        read_cifar("cifar10", tmp_path)
