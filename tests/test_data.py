"""Data sets: the four official CIFAR layouts, the real sample the repository carries, every
data error, download from a local server and a file:// URL, synthetic data and preprocessing."""

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE

from netgraph import RecipeError
from netgraph.data.cifar import LAYOUTS, download_cifar, load_cifar, read_cifar
from netgraph.data.dataset import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Dataset,
    channel_stats,
    default_cache_dir,
    preprocess,
)
from netgraph.data.synthetic import synthetic

# --- small files in the official layouts, built here -----------------------------------


def make_part(n, num_classes, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n)
    return images, labels


def write_binary(path, images, labels, cifar100=False):
    # One record: label byte(s) then R, G, B planes of 32 x 32 (CIFAR-100: coarse, fine).
    label_bytes = [labels // 5, labels] if cifar100 else [labels]
    records = np.concatenate(
        [np.stack(label_bytes, 1).astype(np.uint8), images.reshape(len(images), -1)], axis=1
    )
    path.write_bytes(records.tobytes())


def write_pickle(path, content):
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)  # as the official files (Python 2)


def write_layout(root, name, kind, train_parts, test_part):
    """Write the folder the official archive extracts to; return it."""
    layout = LAYOUTS[(name, kind)]
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True)
    classes = [f"name{i}" for i in range(layout.num_classes)]
    parts = [(layout.train_file(i + 1), part) for i, part in enumerate(train_parts)]
    parts.append((layout.test_file, test_part))
    for filename, (images, labels) in parts:
        if kind == "binary":
            write_binary(folder / filename, images, labels, cifar100=name == "cifar100")
        else:
            key = b"labels" if name == "cifar10" else b"fine_labels"
            write_pickle(
                folder / filename,
                {b"data": images.reshape(len(images), -1), key: labels.tolist(), b"batch_label": b"test"},
            )
    if kind == "binary":
        (folder / layout.meta_file).write_text("\n".join(classes) + "\n\n")  # the official has blank lines
    else:
        key = b"label_names" if name == "cifar10" else b"fine_label_names"
        write_pickle(folder / layout.meta_file, {key: [c.encode() for c in classes]})
    return folder


def cifar10_binary(root, records=(5, 4, 3)):
    """A small cifar-10-batches-bin with len(records) training files; (folder, parts)."""
    parts = [make_part(n, 10, seed) for seed, n in enumerate(records)]
    test = make_part(6, 10, 99)
    return write_layout(root, "cifar10", "binary", parts, test), parts, test


@pytest.mark.parametrize(
    "name,kind",
    [("cifar10", "binary"), ("cifar10", "python"), ("cifar100", "binary"), ("cifar100", "python")],
)
def test_every_official_layout_reads_pixel_exact(tmp_path, name, kind):
    classes = 10 if name == "cifar10" else 100
    train = (
        [make_part(7, classes, 1), make_part(5, classes, 2)]
        if name == "cifar10"
        else [make_part(9, classes, 1)]
    )
    test = make_part(4, classes, 3)
    folder = write_layout(tmp_path, name, kind, train, test)
    for where in (tmp_path, folder):  # the parent folder or the layout folder itself
        data = read_cifar(name, where)
        assert data.name == name and data.classes == [f"name{i}" for i in range(classes)]
        assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
        assert torch.equal(data.train_images, torch.from_numpy(np.concatenate([p[0] for p in train])))
        assert torch.equal(data.train_labels, torch.from_numpy(np.concatenate([p[1] for p in train])))
        assert torch.equal(data.test_images, torch.from_numpy(test[0]))
        assert torch.equal(data.test_labels, torch.from_numpy(test[1]))
        assert data.image_shape == (3, 32, 32) and data.num_classes == classes


def test_binary_pixels_are_rgb_planes(tmp_path):
    folder, parts, _ = cifar10_binary(tmp_path, records=(2,))
    record = np.fromfile(folder / "data_batch_1.bin", dtype=np.uint8)[:3073]
    image = read_cifar("cifar10", tmp_path).train_images[0]
    assert image[0, 0, 1] == record[1 + 1]  # R plane, row 0, column 1
    assert image[1, 2, 3] == record[1 + 1024 + 2 * 32 + 3]  # G plane
    assert image[2, 31, 31] == record[3072]  # last byte: B plane, bottom right


def test_dataset_to_moves_every_tensor(tmp_path):
    data = synthetic(8, 4)
    moved = data.to("cpu")
    assert isinstance(moved, Dataset) and moved.classes == data.classes
    assert torch.equal(moved.test_images, data.test_images)


def test_the_real_sample():
    """samples/cifar10 through the reader: 2,000 + 500 real images whose channel statistics are
    the official ones (1.5 is about 2 standard errors of a channel mean over 2,000 images)."""
    data = read_cifar("cifar10", SAMPLE)
    assert data.train_images.shape == (2000, 3, 32, 32)
    assert data.test_images.shape == (500, 3, 32, 32)
    for labels in (data.train_labels, data.test_labels):
        assert labels.min() >= 0 and labels.max() <= 9
        assert len(labels.unique()) == 10
    assert data.classes[0] == "airplane" and data.classes[9] == "truck"
    mean, std = channel_stats(data.train_images)
    assert np.allclose(mean, (125.3, 123.0, 113.9), atol=1.5)
    assert np.allclose(std, (63.0, 62.1, 66.7), atol=1.5)


# --- every data error is a RecipeError naming the file -------------------------------


def raises_naming(path, match=None):
    """Context: a RecipeError whose file is `path` and which carries a hint."""

    class Check:
        def __enter__(self):
            self.inner = pytest.raises(RecipeError, match=match)
            self.info = self.inner.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.inner.__exit__(*exc)
            assert self.info.value.file == str(path), str(self.info.value)
            assert self.info.value.hint, str(self.info.value)
            return suppressed

    return Check()


def test_truncated_binary_file(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with raises_naming(path, match="not a whole number of 3,073-byte records"):
        read_cifar("cifar10", tmp_path)


def test_empty_binary_file(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    (folder / "test_batch.bin").write_bytes(b"")
    with raises_naming(folder / "test_batch.bin", match="no records"):
        read_cifar("cifar10", tmp_path)


def test_label_out_of_range(tmp_path):
    folder, _, _ = cifar10_binary(tmp_path)
    path = folder / "data_batch_3.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 10  # the second record's label; CIFAR-10 has 0..9
    path.write_bytes(bytes(raw))
    with raises_naming(path, match="label 10 is out of range 0..9"):
        read_cifar("cifar10", tmp_path)


def test_corrupt_pickle(tmp_path):
    folder = write_layout(tmp_path, "cifar10", "python", [make_part(3, 10, 0)], make_part(2, 10, 1))
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes()[:50])
    with raises_naming(path, match="cannot read this pickle"):
        read_cifar("cifar10", tmp_path)


def test_pickle_with_wrong_keys_or_shapes(tmp_path):
    folder = write_layout(tmp_path, "cifar10", "python", [make_part(3, 10, 0)], make_part(2, 10, 1))
    path = folder / "test_batch"
    write_pickle(path, {b"pixels": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    with raises_naming(path, match="has no key b'data'"):
        read_cifar("cifar10", tmp_path)
    write_pickle(path, {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with raises_naming(path, match="expected uint8 N x 3072"):
        read_cifar("cifar10", tmp_path)
    write_pickle(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]})
    with raises_naming(path, match="labels"):
        read_cifar("cifar10", tmp_path)


def test_pickle_that_runs_code_is_refused(tmp_path):
    folder = write_layout(tmp_path, "cifar10", "python", [make_part(3, 10, 0)], make_part(2, 10, 1))
    path = folder / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}, protocol=2))
    with raises_naming(path, match="refusing to load"):
        read_cifar("cifar10", tmp_path)


@pytest.mark.parametrize("name", ["test_batch.bin", "data_batch_2.bin", "batches.meta.txt"])
def test_missing_files(tmp_path, name):
    """The test file, a gap in the numbered training files (1..3 written), the class names."""
    folder, _, _ = cifar10_binary(tmp_path)
    (folder / name).unlink()
    with raises_naming(folder / name, match="missing file"):
        read_cifar("cifar10", tmp_path)


def test_missing_folder(tmp_path):
    with raises_naming(tmp_path / "nowhere", match="no such folder"):
        read_cifar("cifar10", tmp_path / "nowhere")


def test_folder_in_neither_layout(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    with raises_naming(tmp_path, match="no folder cifar-10-batches-bin or cifar-10-batches-py"):
        read_cifar("cifar10", tmp_path)


def test_the_jpeg_copy_folder_points_at_its_converter(tmp_path):
    """../shared/data/cifar10-jpeg holds JPEGs and to_batches.py, which writes the batches."""
    (tmp_path / "to_batches.py").write_text("")
    with raises_naming(
        tmp_path,
        match=r"holds no cifar10 data set in a layout netgraph reads, but a "
        r"converter \(run python .*to_batches.py OUT",
    ):
        read_cifar("cifar10", tmp_path)


def test_folder_of_the_other_data_set(tmp_path):
    cifar10_binary(tmp_path)
    with raises_naming(tmp_path, match="holds cifar10"):
        read_cifar("cifar100", tmp_path)


def test_unknown_data_set_name(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'cifar10'"):
        read_cifar("cifar-10", tmp_path)


# --- download, served locally --------------------------------------------------------


def make_archive(path, members):
    """A .tar.gz holding `members` (name -> bytes); returns its MD5."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official_archive(tmp_path):
    """A small cifar-10-binary.tar.gz in the official layout; (path, md5, train images)."""
    folder, parts, _ = cifar10_binary(tmp_path / "src", records=(3, 2))
    members = {f"cifar-10-batches-bin/{f.name}": f.read_bytes() for f in sorted(folder.iterdir())}
    served = tmp_path / "served"
    served.mkdir()
    path = served / "cifar-10-binary.tar.gz"
    md5 = make_archive(path, members)
    return path, md5, np.concatenate([p[0] for p in parts])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(official_archive):
    """An HTTP server on 127.0.0.1 serving the archive's folder; its base URL."""
    handler = functools.partial(QuietHandler, directory=str(official_archive[0].parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_over_http(tmp_path, server, official_archive):
    _, md5, train_images = official_archive
    cache = tmp_path / "cache"
    folder = download_cifar("cifar10", cache, url=server + "/cifar-10-binary.tar.gz", md5=md5)
    assert folder == cache / "cifar-10-batches-bin"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin"]  # no archive, no temp files
    assert torch.equal(read_cifar("cifar10", cache).train_images, torch.from_numpy(train_images))


def test_download_from_file_url(tmp_path, official_archive):
    path, md5, train_images = official_archive
    folder = download_cifar("cifar10", tmp_path / "cache", url=path.as_uri(), md5=md5)
    assert torch.equal(read_cifar("cifar10", folder).train_images, torch.from_numpy(train_images))


def test_md5_mismatch_deletes_the_file(tmp_path, server):
    cache = tmp_path / "cache"
    url = server + "/cifar-10-binary.tar.gz"
    wrong = "0" * 32
    with pytest.raises(RecipeError) as info:
        download_cifar("cifar10", cache, url=url, md5=wrong)
    message = str(info.value)
    assert url in message and wrong in message and "expected" in message
    got = message.split("MD5 ")[1].split(",")[0]
    assert len(got) == 32 and got != wrong
    assert list(cache.iterdir()) == []


def test_download_errors_name_the_url(tmp_path, server):
    url = server + "/missing.tar.gz"
    with pytest.raises(RecipeError, match="download failed") as info:
        download_cifar("cifar10", tmp_path / "cache", url=url)
    assert info.value.file == url and list((tmp_path / "cache").iterdir()) == []


def test_unsafe_archive_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    md5 = make_archive(archive, {"cifar-10-batches-bin/../../evil.txt": b"x"})
    cache = tmp_path / "cache"
    with pytest.raises(RecipeError, match="refusing to extract"):
        download_cifar("cifar10", cache, url=archive.as_uri(), md5=md5)
    assert not (tmp_path / "evil.txt").exists() and list(cache.iterdir()) == []


def test_load_cifar_downloads_once_then_reads_the_cache(tmp_path, official_archive):
    path, md5, train_images = official_archive
    cache = tmp_path / "cache"
    first = load_cifar("cifar10", cache_dir=cache, url=path.as_uri(), md5=md5)
    path.unlink()  # a second download would now fail
    second = load_cifar("cifar10", cache_dir=cache, url=path.as_uri(), md5=md5)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(second.train_images, torch.from_numpy(train_images))
    data_dir = load_cifar("cifar10", data_dir=cache / "cifar-10-batches-bin", cache_dir=tmp_path / "unused")
    assert torch.equal(data_dir.train_labels, first.train_labels)
    assert not (tmp_path / "unused").exists()


def test_load_cifar_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("NETGRAPH_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    with raises_naming(tmp_path / "env-cache", match="downloading is off") as info:
        load_cifar("cifar10", download=False)
    assert "--data-dir" in info.value.hint


# --- synthetic data and preprocessing ------------------------------------------------


def test_synthetic_is_deterministic_and_learnable():
    a, b, c = synthetic(600, 300, seed=1), synthetic(600, 300, seed=1), synthetic(600, 300, seed=2)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (600, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.train_labels.bincount().tolist() == [60] * 10 and len(a.classes) == 10
    # Nearest class mean, learnt from the training images, gets most test images right.
    means = torch.stack([a.train_images[a.train_labels == k].float().mean(0) for k in range(10)])
    distances = torch.cdist(a.test_images.float().flatten(1), means.flatten(1))
    accuracy = (distances.argmin(1) == a.test_labels).float().mean()
    assert accuracy > 0.5  # chance is 0.1
    other = synthetic(10, 5, shape=(1, 8, 8), classes=3)
    assert other.train_images.shape == (10, 1, 8, 8) and other.train_labels.max() <= 2


def test_preprocess_normalises_pads_and_casts():
    images = synthetic(64, 1).train_images
    mean, std = channel_stats(images)
    x = preprocess(images, mean, std)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    padded = preprocess(images, CIFAR10_MEAN, CIFAR10_STD, pad=4)
    assert padded.shape == (64, 3, 40, 40)
    unpadded = preprocess(images, CIFAR10_MEAN, CIFAR10_STD)
    assert torch.equal(padded[:, :, 4:-4, 4:-4], unpadded)
    # Reflect: the mirror about the edge pixel, which itself is not repeated.
    assert torch.equal(padded[:, :, 3, 4:-4], unpadded[:, :, 1])
    assert torch.equal(padded[:, :, 4:-4, 0], unpadded[:, :, :, 4])
    expected = np.pad(unpadded.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    assert np.array_equal(padded.numpy(), expected)
    half = preprocess(images, CIFAR10_MEAN, CIFAR10_STD, pad=4, dtype=torch.float16)
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), padded, atol=2e-3)
    pixel = (float(images[0, 0, 0, 0]) - CIFAR10_MEAN[0]) / CIFAR10_STD[0]
    assert abs(float(unpadded[0, 0, 0, 0]) - pixel) < 1e-5


def test_preprocess_rejects_bad_arguments():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(images.float(), CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(ValueError, match="3 values"):
        preprocess(images, (1.0,), (1.0,))
    with pytest.raises(ValueError, match="pad"):
        preprocess(images, CIFAR10_MEAN, CIFAR10_STD, pad=8)
