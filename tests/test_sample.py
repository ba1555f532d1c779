"""samples/cifar10, the real CIFAR-10 sample the repository carries: its files, its
SHA256SUMS and its README agree with tools/make_sample.py, which cuts it; the tool takes
the same records from the official files as from the shared subset; the reader refuses a
changed byte."""

import shutil

import make_sample
import numpy as np
import pytest
from conftest import SAMPLE

from netgraph import RecipeError
from netgraph.data.cifar import read_cifar

BATCHES = SAMPLE / make_sample.FOLDER


def test_the_files_match_the_sha256sums_the_tool_writes():
    listed = (SAMPLE / make_sample.CHECKSUMS).read_text()
    assert listed == make_sample.checksums(SAMPLE)
    assert sorted(p.name for p in BATCHES.iterdir()) == sorted([*make_sample.CUTS, make_sample.META])
    for line in listed.splitlines():  # and `sha256sum -c` reads them from samples/cifar10
        digest, name = line.split("  ")
        assert make_sample.sha256(SAMPLE / name) == digest, name


def test_the_readme_is_the_one_the_tool_writes_from_the_files():
    names = make_sample.class_names(BATCHES)
    assert (SAMPLE / "README.md").read_text() == make_sample.readme(names, make_sample.class_counts(SAMPLE))


def test_each_file_holds_its_records_and_the_sample_stays_under_8_mb():
    for name in make_sample.CUTS:
        assert (BATCHES / name).stat().st_size == make_sample.PER_FILE * make_sample.RECORD, name
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= 8_000_000, total  # issue 32's limit on what the sample adds to the repository


def test_the_reader_refuses_a_changed_byte_naming_the_file(tmp_path):
    copy = shutil.copytree(SAMPLE, tmp_path / "cifar10")
    test = copy / make_sample.FOLDER / "test_batch.bin"
    data = bytearray(test.read_bytes())
    data[5000] ^= 1  # one pixel's lowest bit
    test.write_bytes(bytes(data))
    with pytest.raises(RecipeError, match="SHA-256 is not the one") as error:
        read_cifar("cifar10", copy)
    assert error.value.file == str(test)


def _official(folder, records):
    """An official-layout folder of random records: data_batch_1..5 and the real test batch."""
    rng = np.random.default_rng(0)
    batches = folder / make_sample.FOLDER
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        part = rng.integers(0, 256, (records, make_sample.RECORD), dtype=np.uint8)
        part[:, 0] %= 10
        part.tofile(batches / name)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (batches / make_sample.META).write_text("\n".join(names) + "\n\n")  # a blank line the cut drops
    return batches


def test_the_official_files_and_the_shared_subset_cut_the_same_bytes(tmp_path, monkeypatch):
    """At a small scale (5 records a file from 12, the subset's 1,017 as 9): batches 1-4 and
    batch 5 as the held-out file, never the official test batch, whichever the source."""
    monkeypatch.setattr(make_sample, "PER_FILE", 5)
    monkeypatch.setattr(make_sample, "SUBSET_RECORDS", 9)
    official = _official(tmp_path / "official", 12)
    subset = tmp_path / "subset" / make_sample.FOLDER
    subset.mkdir(parents=True)
    for i in range(1, 5):
        (subset / f"data_batch_{i}.bin").write_bytes(
            (official / f"data_batch_{i}.bin").read_bytes()[: 9 * 3073]
        )
    (subset / "test_batch.bin").write_bytes((official / "data_batch_5.bin").read_bytes()[: 9 * 3073])
    shutil.copy(official / make_sample.META, subset / make_sample.META)
    assert make_sample.source_files(tmp_path / "official")[0] == "official"
    assert make_sample.source_files(tmp_path / "subset")[0] == "subset"
    a = make_sample.cut(tmp_path / "official", tmp_path / "a")
    for name, (source, _) in make_sample.CUTS.items():
        assert (a / make_sample.FOLDER / name).read_bytes() == (official / source).read_bytes()[: 5 * 3073]
    assert make_sample.differences(tmp_path / "subset", a) == []
    assert make_sample.main(["--source", str(subset), "--out", str(a), "--check"]) == 0
    data = bytearray((a / make_sample.FOLDER / "data_batch_3.bin").read_bytes())
    data[-1] ^= 1
    (a / make_sample.FOLDER / "data_batch_3.bin").write_bytes(bytes(data))
    assert make_sample.differences(official, a) == [f"{make_sample.FOLDER}/data_batch_3.bin"]
    assert make_sample.main(["--source", str(official), "--out", str(a), "--check"]) == 1


def test_a_folder_that_is_neither_source_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="neither the official binary layout"):
        make_sample.source_files(tmp_path)
