"""The folder-of-images and embeddings-file sources: items, labels, bad files, letterboxing, the cache, and a run."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from plugins.errors import InputError
from plugins.sources import folder as folder_source
from plugins.sources.dataset import StoredImages
from plugins.sources.embeddings_file import embeddings_file
from plugins.sources.folder import image_folder
from tests.conftest import run_cli, run_in_process

DIGITS = load_digits()


def digit(index: int, width: int, height: int, colour: tuple[float, float, float] | None = None) -> Image.Image:
    """Digit ``index`` of scikit-learn's set stretched to width x height, gray or tinted by ``colour``."""
    gray = Image.fromarray((DIGITS.images[index] * 255 / 16).astype(np.uint8)).resize((width, height))
    if colour is None:
        return gray
    pixels = np.asarray(gray, dtype=np.float64)[..., None] * np.asarray(colour)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def read(root: Path, tmp_path: Path, **kwargs) -> object:
    return image_folder(str(root), cache_dir=str(tmp_path / "cache"), image_size=16, **kwargs)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def classes_folder(tmp_path: Path) -> Path:
    """Three class folders of digits: PNG, JPEG and WebP, gray and colour, 16 to 600 pixels, odd aspects."""
    root = tmp_path / "images"
    shapes = [(16, 16), (600, 40), (37, 91), (120, 64), (64, 600), (200, 150)]
    formats = ["png", "jpg", "webp", "png", "jpeg", "bmp"]
    for n in range(18):
        index = n * 7
        width, height = shapes[n % len(shapes)]
        colour = (1.0, 0.6, 0.2) if n % 3 == 0 else None
        save(digit(index, width, height, colour), root / str(DIGITS.target[index]) / f"d{n:02d}.{formats[n % 6]}")
    return root


def test_class_folders_give_ids_labels_hashes_and_sizes(classes_folder, tmp_path):
    data = read(classes_folder, tmp_path)
    files = sorted(p.relative_to(classes_folder).as_posix() for p in classes_folder.rglob("*.*"))
    assert list(data.item_ids) == files
    assert data.class_names == sorted({f.split("/")[0] for f in files}, key=int)
    assert [data.class_names[k] for k in data.labels] == [f.split("/")[0] for f in files]
    assert data.images.shape == (18, 16, 16, 3) and data.images.dtype == np.float32  # colour files: RGB
    assert data.images.min() >= 0 and data.images.max() <= 1 and data.images.max() > 0.5
    assert list(data.extra["content_sha256"]) == [sha(classes_folder / f) for f in files]
    sizes = [Image.open(classes_folder / f).size for f in files]
    assert list(data.extra["width"]) == [w for w, _ in sizes] and list(data.extra["height"]) == [h for _, h in sizes]
    assert data.split is None and data.skipped == () and data.kind == "images"


def test_gray_files_give_gray_images_and_originals_at_their_size(tmp_path):
    root = tmp_path / "gray"
    save(digit(0, 30, 50), root / "a.png")
    save(digit(1, 64, 64, (1, 1, 1)).convert("L"), root / "b.jpg")
    data = read(root, tmp_path, folder_labels=False)
    assert data.images.shape == (2, 16, 16) and list(data.labels) == [-1, -1] and data.class_names == []
    original = data.original(0)
    assert original.dtype == np.uint8 and original.shape == (50, 30)
    assert np.array_equal(original, np.asarray(Image.open(root / "a.png")))
    assert np.array_equal(pickle.loads(pickle.dumps(data.original))(0), original)  # for tasks in other processes
    assert data.original(1).shape == (64, 64)
    assert read(root, tmp_path, grayscale=False).images.shape == (2, 16, 16, 3)


def test_letterbox_geometry(tmp_path):
    root = tmp_path / "shapes"
    save(Image.new("L", (40, 20), 255), root / "wide.png")      # scale 0.4: 16 x 8, 4 rows of padding above
    save(Image.new("L", (20, 40), 255), root / "tall.png")      # 8 x 16, 4 columns of padding left
    save(Image.new("L", (30, 20), 255), root / "odd.png")       # scale 16/30: 16 x 10.67 -> 11 rows, 2 above
    save(Image.new("L", (4, 2), 255), root / "small.png")       # scaled up: 16 x 8
    save(Image.new("RGB", (16, 16), (255, 0, 0)), root / "red.png")
    save(Image.new("RGBA", (16, 16), (255, 255, 255, 128)), root / "half.png")
    save(Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)), root / "deep.png")  # 16 bits
    as_gray = read(root, tmp_path, grayscale=True)
    gray = dict(zip(as_gray.item_ids, as_gray.images, strict=True))

    def band(rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        expected = np.zeros((16, 16), dtype=np.float32)
        expected[rows, cols] = 1
        return expected

    np.testing.assert_array_equal(gray["wide.png"], band(rows=slice(4, 12)))
    np.testing.assert_array_equal(gray["tall.png"], band(cols=slice(4, 12)))
    np.testing.assert_array_equal(gray["odd.png"], band(rows=slice(2, 13)))
    np.testing.assert_array_equal(gray["small.png"], band(rows=slice(4, 12)))
    # Pillow's luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000
    np.testing.assert_allclose(gray["red.png"], int(255 * 299 / 1000) / 255)
    np.testing.assert_allclose(gray["half.png"], 128 / 255, atol=1 / 255)  # white at half alpha over black
    np.testing.assert_allclose(gray["deep.png"], 1.0)
    as_colour = read(root, tmp_path)  # some files are colour: RGB
    colour = dict(zip(as_colour.item_ids, as_colour.images, strict=True))
    np.testing.assert_array_equal(colour["red.png"][..., 0], 1.0)
    np.testing.assert_array_equal(colour["red.png"][..., 1:], 0.0)
    np.testing.assert_array_equal(colour["wide.png"][..., 2], band(rows=slice(4, 12)))


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "turned"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 20 high, shown turned a quarter: 20 wide x 40 high
    root.mkdir()
    Image.new("L", (40, 20), 255).save(root / "photo.jpg", exif=exif, quality=100)
    data = read(root, tmp_path)
    assert (data.extra["height"][0], data.extra["width"][0]) == (40, 20)
    assert (data.images[0][:, 4:12] > 0.95).all() and (data.images[0][:, :4] == 0).all()
    assert data.original(0).shape == (40, 20)


def test_bad_files_are_listed_with_reasons_and_counted_once(classes_folder, tmp_path, caplog):
    good = classes_folder / "0" / "d00.png"
    (classes_folder / "0" / "empty.png").write_bytes(b"")
    (classes_folder / "1" / "cut.jpg").write_bytes(_jpeg_bytes()[:400])
    (classes_folder / "1" / "noise.webp").write_bytes(np.random.default_rng(0).bytes(300))
    (classes_folder / "2" / "cut.png").write_bytes(good.read_bytes()[:-30])
    (classes_folder / "notes.txt").write_text("not an image")
    (classes_folder / "2" / "labels.json").write_text("{}")
    (classes_folder / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.INFO, logger="runner"):
        data = read(classes_folder, tmp_path)
    reasons = dict(data.skipped)
    assert set(reasons) == {"0/empty.png", "1/cut.jpg", "1/noise.webp", "2/cut.png"}
    assert reasons["0/empty.png"] == "empty file: 0 bytes"
    assert reasons["1/cut.jpg"].startswith(("truncated", "corrupt"))
    assert reasons["1/noise.webp"] == "not an image Pillow can read"
    assert reasons["2/cut.png"].startswith(("truncated", "corrupt"))
    assert len(data.item_ids) == 18 and "notes.txt" not in data.item_ids
    lines = [r for r in caplog.records if r.name == "runner"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "18 items" in lines[0].message and "4 skipped" in lines[0].message
    assert "1 empty file" in lines[0].message and "2 files that are not images ignored" in lines[0].message


def _jpeg_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    digit(3, 200, 200, (1, 1, 1)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_labels_split_columns_and_bad_rows(tmp_path):
    root = tmp_path / "flat"
    for n in range(9):  # 8.png is not in the manifest
        save(digit(n, 20 + n, 24), root / ("sub" if n % 2 else "") / f"{n}.png")
    (root / "readme.md").write_text("notes")
    manifest = write_csv(tmp_path / "labels.csv", "path,label,split,cost,tags,note", [
        "0.png,cat,test,1.5,a;b,x",
        "sub/1.png,dog,,2,,",
        "./2.png,,pool,,b,y",            # unlabelled; ./ is the same path
        "sub/3.png,fox,,3,,",            # fox is not among the classes
        "4.png,cat,holdout,1,,",         # unknown split
        "missing.png,cat,,1,,",          # no such file
        "readme.md,dog,,1,,",            # not an image
        "../outside.png,dog,,1,,",       # outside the folder
        "0.png,dog,,9,,",                # a second row for 0.png
        "sub\\5.png,dog,test,,,",        # Windows separators
        "6.png,,test,,,",                # a test item needs a label
        f"{root / 'sub' / '7.png'},cat,,,,",  # an absolute path inside the folder
    ])
    data = read(root, tmp_path, manifest=str(manifest), classes=["cat", "dog", "bird"])
    by_id = {i: k for k, i in enumerate(data.item_ids)}
    assert sorted(by_id) == ["0.png", "2.png", "8.png", "sub/1.png", "sub/5.png", "sub/7.png"]
    assert data.class_names == ["cat", "dog", "bird"]
    label = {i: (data.class_names[data.labels[k]] if data.labels[k] >= 0 else None) for i, k in by_id.items()}
    assert label == {"0.png": "cat", "sub/1.png": "dog", "2.png": None, "sub/5.png": "dog", "sub/7.png": "cat",
                     "8.png": None}
    split = {i: str(data.split[k]) for i, k in by_id.items()}
    assert split == {"0.png": "test", "sub/1.png": "pool", "2.png": "pool", "sub/5.png": "test", "sub/7.png": "pool",
                     "8.png": "pool"}
    cost = {i: data.extra["cost"][k] for i, k in by_id.items()}
    assert data.extra["cost"].dtype == np.float64 and cost["0.png"] == 1.5 and np.isnan(cost["2.png"])
    assert np.isnan(cost["8.png"])  # not in the manifest
    assert data.extra["tags"][by_id["0.png"]] == ("a", "b") and data.extra["tags"][by_id["8.png"]] == ()
    assert data.extra["note"][by_id["2.png"]] == "y" and data.extra["note"][by_id["sub/1.png"]] == ""
    reasons = dict(data.skipped)
    assert reasons["sub/3.png"] == "label not among project.source.classes: 'fox'"
    assert reasons["4.png"].startswith("unknown split: 'holdout'")
    assert reasons["missing.png"].startswith("file not found")
    assert reasons["readme.md"].startswith("not an image file")
    assert reasons["labels.csv:9"].startswith("manifest row without a usable path")
    assert reasons["0.png"].startswith("duplicate manifest row: line 10; line 2 is used")
    assert reasons["6.png"] == "test item without a label"
    assert len(data.skipped) == 7


def test_json_lines_manifest(tmp_path):
    root = tmp_path / "j"
    for n in range(4):
        save(digit(n, 16, 16), root / f"{n}.png")
    lines = [json.dumps({"path": "0.png", "label": 7, "tags": ["x", "y"], "cost": 2}),
             json.dumps({"path": "1.png", "label": None}),
             "{not json",
             json.dumps({"path": "2.png", "label": "3"})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    data = read(root, tmp_path, manifest=str(tmp_path / "m.jsonl"))
    assert data.class_names == ["3", "7"]
    assert list(data.labels) == [1, -1, 0, -1]
    assert data.extra["tags"][0] == ("x", "y") and data.extra["cost"][0] == 2.0 and np.isnan(data.extra["cost"][3])
    assert dict(data.skipped)["m.jsonl:3"].startswith("manifest line is not JSON")


def test_classes_from_the_config_keep_their_order_and_empty_classes(tmp_path):
    root = tmp_path / "c"
    for n, name in enumerate(["b", "a", "b", "zebra"]):
        save(digit(n, 16, 16), root / name / f"{n}.png")
    data = read(root, tmp_path, classes=["b", "a", "empty"])
    assert data.class_names == ["b", "a", "empty"]
    assert dict(zip(data.item_ids, data.labels, strict=True)) == {"a/1.png": 1, "b/0.png": 0, "b/2.png": 0}
    assert dict(data.skipped) == {"zebra/3.png": "label not among project.source.classes: 'zebra'"}
    natural = read(root, tmp_path, folder_labels=True)
    assert natural.class_names == ["a", "b", "zebra"]


def test_class_names_sort_naturally(tmp_path):
    root = tmp_path / "n"
    for n, name in enumerate(["10", "2", "1"]):
        save(digit(n, 16, 16), root / name / f"{n}.png")
    assert read(root, tmp_path).class_names == ["1", "2", "10"]


def test_cache_is_reused_and_renewed_when_a_file_changes(classes_folder, tmp_path, monkeypatch, caplog):
    before = sorted(p.as_posix() for p in classes_folder.rglob("*"))
    first = read(classes_folder, tmp_path)
    decoded = []
    original = folder_source._decode_chunk
    monkeypatch.setattr(folder_source, "_decode_chunk", lambda *a: decoded.append(len(a[1])) or original(*a))
    with caplog.at_level(logging.INFO, logger="runner"):
        second = read(classes_folder, tmp_path)
    assert decoded == [] and "from the cache" in caplog.records[-1].message
    assert list(second.item_ids) == list(first.item_ids)
    assert list(second.extra["content_sha256"]) == list(first.extra["content_sha256"])
    np.testing.assert_array_equal(second.images, first.images)
    assert sorted(p.as_posix() for p in classes_folder.rglob("*")) == before  # nothing written into the folder
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    changed = classes_folder / "0" / "d00.png"
    save(digit(500, 16, 16), changed)
    third = read(classes_folder, tmp_path)
    assert sum(decoded) == 18
    k = list(third.item_ids).index("0/d00.png")
    assert third.extra["content_sha256"][k] == sha(changed) != first.extra["content_sha256"][k]
    assert not np.array_equal(third.images[k], first.images[k])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_image_size_is_part_of_the_cache_key(classes_folder, tmp_path):
    wide = image_folder(str(classes_folder), cache_dir=str(tmp_path / "cache"), image_size=[12, 20])
    square = image_folder(str(classes_folder), cache_dir=str(tmp_path / "cache"), image_size=16)
    assert wide.images.shape[1:3] == (12, 20) and square.images.shape[1:3] == (16, 16)


def test_large_pools_stay_on_disk_and_threads_change_nothing(classes_folder, tmp_path, monkeypatch):
    held = read(classes_folder, tmp_path, workers=1)
    monkeypatch.setattr(folder_source, "IN_MEMORY_MAX_BYTES", 0)
    monkeypatch.setattr(folder_source, "CHUNK_FILES", 4)
    stored = image_folder(str(classes_folder), cache_dir=str(tmp_path / "other"), image_size=16, workers=3)
    assert isinstance(stored.images, StoredImages)
    np.testing.assert_array_equal(np.asarray(stored.images), held.images)
    assert list(stored.item_ids) == list(held.item_ids)


def test_a_file_that_fails_to_decode_is_left_out_of_the_cache_too(classes_folder, tmp_path):
    (classes_folder / "2" / "cut.png").write_bytes((classes_folder / "0" / "d00.png").read_bytes()[:-30])
    first, second = read(classes_folder, tmp_path), read(classes_folder, tmp_path)
    assert "2/cut.png" in dict(first.skipped) and first.skipped == second.skipped
    assert len(second.item_ids) == len(second.images) == 18


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a folder"),
    ("empty", "holds no files"),
    ("text", "holds 2 files and none is an image"),
    ("broken", "no usable image in"),
    ("no path column", "has no 'path' column"),
    ("nothing named", "none of the paths in"),
    ("bad size", "project.source.image_size"),
    ("repeated class", "project.source.classes lists 'a' twice"),
    ("no workers", "project.source.workers=0"),
])
def test_input_errors_are_one_line(tmp_path, case, message):
    root = tmp_path / "in"
    root.mkdir()
    kwargs: dict = {}
    if case == "missing":
        root = tmp_path / "nowhere"
    elif case == "empty":
        (root / "sub").mkdir()
    elif case == "text":
        (root / "a.txt").write_text("x")
        (root / "b.csv").write_text("x")
    elif case == "broken":
        (root / "a.png").write_bytes(b"")
        (root / "b.jpg").write_bytes(b"garbage")
    else:
        save(digit(0, 16, 16), root / "a.png")
    if case == "no path column":
        kwargs["manifest"] = str(write_csv(tmp_path / "m.csv", "file,label", ["a.png,1"]))
    if case == "nothing named":
        kwargs["manifest"] = str(write_csv(tmp_path / "m.csv", "path,label", ["in/a.png,1", "b.png,2"]))
    if case == "bad size":
        kwargs["image_size"] = [0, 16]
    if case == "repeated class":
        kwargs["classes"] = ["a", "b", "a"]
    if case == "no workers":
        kwargs["workers"] = 0
    with pytest.raises(InputError) as raised:
        image_folder(str(root), cache_dir=str(tmp_path / "cache"), **{"image_size": 16, **kwargs})
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert "project.source." in text


@pytest.mark.slow
def test_a_run_on_a_folder(tmp_path):
    root = tmp_path / "digits"
    for n in range(160):
        save(digit(n, 16 + n % 5 * 4, 20), root / str(DIGITS.target[n]) / f"{n:03d}.png")
    run_dir = tmp_path / "run"
    done = run_cli("project=folder", f"project.source.path={root}", "project.source.image_size=16",
                   f"project.source.cache_dir={tmp_path / 'cache'}", "project.test_size=40", "loop.rounds=2",
                   "selection.budget=10", "loop.initial_labels=20", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [20, 30, 40]


# --- the embeddings file --------------------------------------------------------------------------------------
@pytest.fixture
def digit_vectors(tmp_path: Path) -> tuple[Path, np.ndarray, list[str]]:
    from sklearn.decomposition import PCA

    vectors = PCA(12, random_state=0).fit_transform(DIGITS.data[:300]).astype(np.float32)
    ids = [f"d{i:03d}" for i in range(300)]
    path = tmp_path / "vectors.npz"
    np.savez(path, embeddings=vectors, ids=np.array(ids))
    return path, vectors, ids


def test_embeddings_npz_with_ids_manifest_and_thumbnails(digit_vectors, tmp_path):
    path, vectors, ids = digit_vectors
    save(digit(0, 20, 20), tmp_path / "thumbs" / "d000.png")
    manifest = write_csv(tmp_path / "m.csv", "item_id,label,split,thumbnail,cost", [
        "d000,0,test,thumbs/d000.png,1", "d001,1,,thumbs/none.png,2", "d002,,,,", "nope,1,,,", "d003,zebra,,,",
    ])
    data = embeddings_file(str(path), manifest=str(manifest), classes=["0", "1", "2"])
    assert data.kind == "embeddings" and data.images.dtype == np.float32 and data.images.shape == (299, 12)
    assert "d003" not in data.item_ids and list(data.item_ids[:3]) == ["d000", "d001", "d002"]
    np.testing.assert_array_equal(data.images[:3], vectors[:3])
    np.testing.assert_array_equal(data.images[3], vectors[4])
    assert list(data.labels[:3]) == [0, 1, -1] and (data.labels[3:] == -1).all()
    assert list(data.split[:3]) == ["test", "pool", "pool"]
    assert data.extra["thumbnail"][0] == str((tmp_path / "thumbs" / "d000.png").resolve())
    assert data.extra["thumbnail"][1] == "" and data.extra["cost"][1] == 2.0
    reasons = dict(data.skipped)
    assert reasons["nope"].startswith("id not in the embeddings file")
    assert reasons["d003"] == "label not among project.source.classes: 'zebra'"


def test_embeddings_npy_with_an_ids_file_and_bad_rows(tmp_path):
    vectors = np.arange(20, dtype=np.float64).reshape(5, 4)
    vectors[2, 1] = np.nan
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("a\nb\nc\n \na\n\n")
    data = embeddings_file(str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"))
    assert list(data.item_ids) == ["a", "b"] and data.images.dtype == np.float32
    assert dict(data.skipped) == {"a": "duplicate id: row 4; row 0 is used", "c": "non-finite value: row 2",
                                  "row 3": "blank id"}
    plain = embeddings_file(str(tmp_path / "v.npy"))
    assert list(plain.item_ids) == ["0", "1", "3", "4"] and list(plain.labels) == [-1] * 4
    np.save(tmp_path / "f.npy", vectors[[0, 1]].astype(np.float32))
    assert isinstance(embeddings_file(str(tmp_path / "f.npy")).images, np.memmap)  # read only where used


def test_embeddings_manifest_keyed_by_path(tmp_path):
    np.savez(tmp_path / "v.npz", embeddings=np.eye(3, dtype=np.float32), ids=np.array(["x/1.png", "x/2.png", "3.png"]))
    manifest = write_csv(tmp_path / "m.csv", "path,label", ["x/1.png,a", "3.png,b"])
    data = embeddings_file(str(tmp_path / "v.npz"), manifest=str(manifest))
    assert data.class_names == ["a", "b"] and list(data.labels) == [0, -1, 1]


@pytest.mark.parametrize("case, message", [
    ("3-d", "one row per item"),
    ("ids length", "has 2 lines"),
    ("no id column", "has no 'item_id' or 'path' column"),
    ("nothing named", "none of the item_id values"),
    ("format", "is not .npy, .npz or .parquet"),
    ("key", "has no array 'embeddings'"),
])
def test_embeddings_input_errors(tmp_path, case, message):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros((3, 2, 2) if case == "3-d" else (3, 2), dtype=np.float32))
    kwargs: dict = {}
    if case == "ids length":
        (tmp_path / "ids.txt").write_text("a\nb\n")
        kwargs["ids"] = str(tmp_path / "ids.txt")
    if case == "no id column":
        kwargs["manifest"] = str(write_csv(tmp_path / "m.csv", "id,label", ["0,a"]))
    if case == "nothing named":
        kwargs["manifest"] = str(write_csv(tmp_path / "m.csv", "item_id,label", ["7,a"]))
    if case == "format":
        path = tmp_path / "v.csv"
        path.write_text("1,2\n")
    if case == "key":
        path = tmp_path / "v.npz"
        np.savez(path, a=np.zeros((2, 2)), b=np.zeros((2, 3)))
    with pytest.raises(InputError) as raised:
        embeddings_file(str(path), **kwargs)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_embeddings_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b"], "embeddings": [[1.0, 2.0], [3.0, 4.0]]})
    pq.write_table(table, tmp_path / "v.parquet")
    data = embeddings_file(str(tmp_path / "v.parquet"))
    assert list(data.item_ids) == ["a", "b"]
    np.testing.assert_array_equal(data.images, [[1, 2], [3, 4]])


def test_a_run_on_embeddings(digit_vectors, tmp_path):
    path, _, ids = digit_vectors
    manifest = write_csv(tmp_path / "labels.csv", "item_id,label", [f"{i},{t}" for i, t in
                                                                   zip(ids, DIGITS.target[:300], strict=True)])
    run_dir = tmp_path / "run"
    run_in_process(run_dir, "project=embeddings", f"project.source.path={path}", f"project.source.manifest={manifest}",
                   "project.test_size=50", "loop.rounds=2", "selection.budget=10", "loop.initial_labels=20")
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [20, 30, 40]
