"""Large pools: the shifted Fashion-MNIST source, memory-mapped arrays, the shared neighbour index, scores in the
input's dtype, streamed PCA, and the per-item stages on Ray giving what a local run gives."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from plugins import neighbours
from plugins.acquisition import bayesian, uncertainty
from plugins.acquisition.probcover import probcover
from plugins.embedders.pixels import PixelPCA
from plugins.errors import InputError
from plugins.metrics.uniqueness import near_duplicate, uniqueness
from plugins.neighbours import NeighbourIndex, NeighbourSearch, NeighbourSettings
from plugins.sources import shifted
from plugins.sources.dataset import StoredImages
from runner.errors import ConfigError
from runner.store import Store
from tests.conftest import run_cli, run_in_process


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (magic 0 0 8 ndim, big-endian sizes), gzip-compressed."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny Fashion-MNIST folder: 40 training and 10 test images of random pixels, labels 0..9."""
    rng = np.random.default_rng(7)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(40) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(10)[::-1],
    }
    root = tmp_path / "fashion"
    root.mkdir()
    for name, array in arrays.items():
        write_idx(root / name, array)
    return root, arrays


def test_shifted_source_without_shift_or_noise_is_the_base_images(tmp_path, fake_fashion, monkeypatch):
    root, arrays = fake_fashion
    monkeypatch.setattr(shifted, "BLOCK_ITEMS", 7)  # several blocks, the last one short
    data = shifted.shifted_fashion_mnist(30, seed=3, cache_dir=str(tmp_path / "cache"), test_size=5,
                                         max_shift=0, noise=0.0, root=str(root))
    assert isinstance(data.images, StoredImages) and data.images.shape == (30, 28, 28)
    assert list(data.split).count("test") == 5 and list(data.split[-5:]) == ["test"] * 5
    train, test = arrays["train-images-idx3-ubyte.gz"], arrays["t10k-images-idx3-ubyte.gz"]
    for i in range(30):
        pool = train if i < 25 else test
        labels = arrays["train-labels-idx1-ubyte.gz"] if i < 25 else arrays["t10k-labels-idx1-ubyte.gz"]
        match = [j for j in range(len(pool)) if np.array_equal(pool[j], np.rint(data.images[i] * 255))]
        assert match, f"item {i} is none of its split's base images"
        assert data.labels[i] == labels[match[0]]
    assert data.images[3].dtype == np.float32 and data.images[:].min() >= 0.0 and data.images[:].max() <= 1.0


def test_shifted_source_is_deterministic_and_shifts_move_pixels(tmp_path, fake_fashion):
    root, arrays = fake_fashion
    build = lambda folder, seed: shifted.shifted_fashion_mnist(  # noqa: E731
        50, seed=seed, cache_dir=str(tmp_path / folder), test_size=10, max_shift=2, noise=0.05, root=str(root)
    )
    a, b, other = build("a", 0), build("b", 0), build("c", 1)
    assert np.array_equal(a.images[:], b.images[:]) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images[:], other.images[:])
    # A shift keeps a shifted copy of the base: the best match over the 25 shifts is far closer than noise-free
    # pixels of an unrelated image would be.
    base = arrays["train-images-idx3-ubyte.gz"].astype(np.float64)
    item = a.images[0].astype(np.float64) * 255
    best = min(np.abs(np.roll(np.roll(b_img, dy, 0), dx, 1)[4:-4, 4:-4] - item[4:-4, 4:-4]).mean()
               for b_img in base for dy in range(-2, 3) for dx in range(-2, 3))
    assert best < 0.05 * 255  # the noise's standard deviation; unrelated random images differ by about 85


def test_a_pool_too_large_for_memory_is_refused_naming_the_memory(tmp_path):
    with pytest.raises(InputError, match=r"project.source.n=10,000,000,000 needs about [\d.]+ GiB of memory"):
        shifted.shifted_fashion_mnist(10**10, seed=0, cache_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_refuses_a_pool_too_large_in_one_line(tmp_path):
    result = run_cli("project=shifted_fashion_mnist", "project.source.n=10000000000",
                     f"project.source.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GiB of memory" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "state.sqlite").exists()


def test_large_arrays_live_in_memory_mapped_files(tmp_path):
    store = Store(tmp_path / "state.sqlite", memmap_min_bytes=1000)
    small, large = np.arange(10.0), np.arange(1000.0)
    with store.transaction() as tx:
        tx.put_array("metrics/small", small)
        tx.put_array("metrics/large", large)
    assert (tmp_path / "arrays" / "metrics__large.npy").is_file()
    assert not (tmp_path / "arrays" / "metrics__small.npy").exists()
    read = store.get_array("metrics/large")
    assert isinstance(read, np.memmap) and np.array_equal(read, large)
    assert np.array_equal(store.get_array("metrics/small"), small)
    with store.transaction() as tx:
        tx.delete_blobs("metrics/")
    assert store.get_array("metrics/large") is None and not (tmp_path / "arrays" / "metrics__large.npy").exists()


def test_a_file_no_committed_row_names_is_removed_on_opening(tmp_path):
    store = Store(tmp_path / "state.sqlite", memmap_min_bytes=0)
    with pytest.raises(RuntimeError, match="stage failed"), store.transaction() as tx:
        tx.put_array("scores/000", np.arange(5.0))
        raise RuntimeError("stage failed")
    assert (tmp_path / "arrays" / "scores__000.npy").is_file()  # written, then the transaction rolled back
    store.close()
    Store(tmp_path / "state.sqlite", memmap_min_bytes=0).close()
    assert list((tmp_path / "arrays").iterdir()) == []


def clustered(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 5
    return (centres[rng.integers(10, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def brute_nearest(x: np.ndarray) -> np.ndarray:
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return d2.argmin(axis=1)


def test_exact_index_finds_the_brute_force_neighbours():
    x = clustered(300)
    index = NeighbourIndex(x, NeighbourSettings())
    found, distance = index.search(3)
    assert not index.approximate
    assert np.array_equal(found[:, 0], brute_nearest(x))
    assert np.all(np.diff(distance, axis=1) >= 0) and not (found == np.arange(300)[:, None]).any()


@pytest.mark.slow
def test_approximate_index_recall_is_measured_against_exact_search():
    x = clustered(3000)
    index = NeighbourIndex(x, NeighbourSettings(approximate_above=1000, probes=4, recall_sample=200))
    found, _ = index.search(1)
    assert index.approximate and index.recall is not None
    truth = brute_nearest(x)
    sample = np.sort(np.random.default_rng(1).choice(3000, size=200, replace=False))
    # The index checks the same seeded sample; allow for ties in distance, which count as hits there.
    hits = (found[sample, 0] == truth[sample]).mean()
    assert abs(index.recall - hits) <= 0.02 and index.recall > 0.8
    assert not (found[:, 0] == np.arange(3000)).any()


def record_calls(function, calls: list):
    """``function``, noting each call's arguments in ``calls`` first."""

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return function(*args, **kwargs)

    return recorded


def test_shared_search_builds_one_index_per_embedding_set_and_reuses_its_search(monkeypatch):
    built = []
    monkeypatch.setattr(neighbours.NeighbourIndex, "__init__", record_calls(neighbours.NeighbourIndex.__init__, built))
    search = NeighbourSearch()
    x = np.random.default_rng(0).normal(size=(200, 5))
    values = uniqueness(x, search)
    flags = near_duplicate(x, 0.5, search)
    assert len(built) == 1  # near-duplicates reused uniqueness's index
    assert np.array_equal(flags, values <= 0.5)
    assert np.allclose(values, uniqueness(x))  # the same figures as a search of its own


def test_probcover_graph_is_bounded_where_the_index_is_approximate():
    x = clustered(4000)
    search = NeighbourSearch(NeighbourSettings(approximate_above=1000))
    chosen = probcover(x, x[:0], 20, 10, np.random.default_rng(0), delta=3.0, max_neighbours=5, neighbours=search)
    assert len(np.unique(chosen)) == 20
    index = search.over(np.asarray(x, dtype=np.float64))
    graph = index.within(3.0, max_neighbours=5)
    assert graph.nnz <= 4000 * 5 and np.diff(graph.indptr).max() <= 5


@pytest.mark.parametrize("function", [uncertainty.entropy, uncertainty.margin, uncertainty.least_confidence,
                                      uncertainty.variance])
def test_uncertainty_scores_keep_float32_and_match_float64(function):
    p = np.random.default_rng(0).dirichlet(np.ones(10), size=40000)
    single = function(p.astype(np.float32))
    assert single.dtype == np.float32
    assert np.allclose(single, function(p), atol=2e-6)
    assert function(p).dtype == np.float64


@pytest.mark.parametrize("function", [bayesian.bald, bayesian.variation_ratios, bayesian.mean_std])
def test_sample_scores_keep_float32(function):
    samples = np.random.default_rng(0).dirichlet(np.ones(4), size=(5, 300))
    single = function(samples.astype(np.float32))
    assert single.dtype == np.float32 and np.allclose(single, function(samples), atol=1e-5)


def test_margin_and_least_confidence_by_hand():
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert np.allclose(uncertainty.margin(p), [-0.2, 0.0, -1.0])
    assert np.allclose(uncertainty.least_confidence(p), [0.5, 0.6, 0.0])


def test_streamed_pca_spans_the_same_axes_as_the_in_memory_fit():
    rng = np.random.default_rng(0)
    # Four axes of clearly different variance, plus a little noise: the axes are well defined.
    axes = np.linalg.qr(rng.normal(size=(36, 4)))[0].T
    latent = rng.normal(size=(3000, 4)) * np.array([4.0, 3.0, 2.0, 1.0])
    images = (latent @ axes + 0.01 * rng.normal(size=(3000, 36))).reshape(3000, 6, 6).astype(np.float32)
    images[100] = images[5]  # a duplicate keeps a bit-identical row
    calls = []

    def map_blocks(function, blocks):
        calls.append(len(blocks))
        return [function(b) for b in blocks]

    import plugins.embedders.pixels as pixels

    streamed = pixels.PixelPCA(4, stream_above=100)
    original = pixels.STREAM_BLOCK
    pixels.STREAM_BLOCK = 700
    try:
        a = streamed.fit_transform(images, map_blocks=map_blocks)
    finally:
        pixels.STREAM_BLOCK = original
    b = PixelPCA(4).fit_transform(images)
    signs = np.sign((a * b).sum(axis=0))
    assert calls == [5, 5, 5]  # three passes over five blocks
    assert np.allclose(a, b * signs, atol=1e-3)
    assert np.array_equal(a[100], a[5])


def selections(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "selected").glob("round_*.csv"))}


SMALL_POOL = ("project=shifted_fashion_mnist", "project.source.n=3000", "project.source.test_size=300",
              "metrics=quality", "loop.rounds=1", "selection.budget=20", "compute.neighbours.approximate_above=1000",
              "embedder.stream_above=1000", "compute.memmap_min_bytes=20000", "compute.shard_items=700",
              "selection.chunk_size=350")


@pytest.mark.slow
def test_ray_run_gives_the_files_of_a_local_run(tmp_path, fake_fashion):
    pytest.importorskip("ray")
    root, _ = fake_fashion
    pool = (*SMALL_POOL, f"project.source.root={root}", f"project.source.cache_dir={tmp_path / 'cache'}")
    local = run_in_process(tmp_path / "local", *pool)
    remote = run_in_process(tmp_path / "ray", *pool, "compute=ray", "compute.num_cpus=2")
    assert remote["resources"]["compute"] == "ray" and remote["resources"]["worker_peak_rss_mib"] > 0
    assert local["resources"]["neighbour_indexes"][0]["items"] == 3000  # the approximate index was used
    assert selections(tmp_path / "local") == selections(tmp_path / "ray")
    for name in ("item_metrics.csv", "metrics.jsonl"):
        if name == "metrics.jsonl":
            strip = lambda text: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                                  for line in text.splitlines()]
            assert strip((tmp_path / "local" / name).read_text()) == strip((tmp_path / "ray" / name).read_text())
        else:
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    embeddings = [np.load(tmp_path / d / "arrays" / "embeddings__static.npy") for d in ("local", "ray")]
    assert np.array_equal(*embeddings)


def test_a_ray_address_that_does_not_answer_is_refused_before_any_write(tmp_path):
    with pytest.raises(ConfigError, match=r"compute.address=127.0.0.1:9: no Ray cluster answers there"):
        run_in_process(tmp_path / "run", "+experiment=digits", "compute=ray", "compute.address=127.0.0.1:9")
    assert not (tmp_path / "run" / "state.sqlite").exists() and not (tmp_path / "run" / ".run.lock").exists()


def test_run_records_its_peak_memory_per_stage(tmp_path):
    summary = run_in_process(tmp_path / "run", "+experiment=digits", "loop.rounds=1")
    resources = summary["resources"]
    assert resources["compute"] == "local"
    stages = resources["stages"]
    assert {"import:-1", "train:0", "score:0", "select:0", "act:0"} <= set(stages)
    assert all(0 < s["peak_rss_mib"] <= resources["peak_rss_mib"] for s in stages.values())
    with sqlite3.connect(tmp_path / "run" / "state.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM array_files").fetchone() == (0,)  # digits: all small blobs


def test_a_small_pool_on_disk_runs_with_the_default_settings(tmp_path, fake_fashion):
    root, _ = fake_fashion
    summary = run_in_process(tmp_path / "run", "project=shifted_fashion_mnist", "project.source.n=400",
                             "project.source.test_size=50", f"project.source.root={root}",
                             f"project.source.cache_dir={tmp_path / 'cache'}", "metrics=quality", "loop.rounds=1")
    assert summary["n_labeled"] == 30 and "neighbour_indexes" not in summary["resources"]  # exact search
    header = (tmp_path / "run" / "item_metrics.csv").read_text().splitlines()[0]
    assert header.startswith("item_id,brightness") and "uniqueness" in header
