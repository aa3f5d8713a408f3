"""The sweep report on tiny hand-made run directories, against numbers worked out by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner import statistics, sweep_report, sweep_summary
from runner.runs import load_runs

REPO = Path(__file__).resolve().parents[1]
LOGREG = {"_target_": "plugins.models.sklearn_model.SklearnClassifier",
          "estimator": {"_target_": "sklearn.linear_model.LogisticRegression", "C": 1.0}}
CNN = {"_target_": "plugins.models.torch_model.TorchClassifier",
       "module": {"_target_": "plugins.models.cnn.GalCNN", "_partial_": True}, "epochs": 50}


def make_run(root: Path, name: str, acquisition: str, seed: int, curve: list[tuple[int, float]],
             finished: bool = True, model: dict | None = None, budget: int = 10) -> Path:
    run = root / name
    (run / "selected").mkdir(parents=True)
    config = {"seed": seed, "project": {"name": "toy"}, "acquisition": {"name": acquisition},
              "model": model or LOGREG, "selection": {"budget": budget}}
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    rows = [{"round": i, "n_labeled": n, "test_accuracy": a, "seconds": {}} for i, (n, a) in enumerate(curve)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (run / "summary.json").write_text(json.dumps({"final_test_accuracy": curve[-1][1], "seed": seed}))
    return run


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    make_run(tmp_path, "e0", "entropy", 0, [(10, 0.5), (20, 0.7), (30, 0.9)])
    make_run(tmp_path, "e1", "entropy", 1, [(10, 0.6), (20, 0.8), (30, 0.8)])
    make_run(tmp_path, "r0", "random", 0, [(10, 0.5), (20, 0.6), (30, 0.7)])
    make_run(tmp_path, "r1", "random", 1, [(10, 0.5), (20, 0.5), (30, 0.6)])
    return tmp_path


def by_acquisition(result: dict) -> dict:
    return {row["acquisition"]: row for row in result["configurations"]}


def test_area_under_curve_is_trapezoid_over_labelled_range() -> None:
    # (10 * (0.5 + 0.7) / 2 + 10 * (0.7 + 0.9) / 2) / (30 - 10) = (6 + 8) / 20
    assert statistics.area_under_curve([(10, 0.5), (20, 0.7), (30, 0.9)]) == pytest.approx(0.7)
    # Uneven spacing: (10 * 0.5 + 30 * 0.9) / 40
    assert statistics.area_under_curve([(10, 0.4), (20, 0.6), (50, 1.2)]) == pytest.approx((5 + 27) / 40)
    assert statistics.area_under_curve([(10, 0.42)]) == 0.42
    assert statistics.area_under_curve([]) is None


def test_labels_to_target_and_mean_std() -> None:
    assert statistics.labels_to_target([(10, 0.5), (20, 0.9), (30, 0.95)], 0.9) == 20
    assert statistics.labels_to_target([(10, 0.5)], 0.9) is None
    stat = statistics.mean_std([1.0, 2.0, 4.0])
    assert stat["mean"] == pytest.approx(7 / 3)
    assert stat["std"] == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert statistics.mean_std([3.0]) == {"n": 1, "mean": 3.0, "std": None}


def test_summary_numbers(toy: Path) -> None:
    rows = by_acquisition(sweep_summary.summarize(load_runs(toy), target=0.9))
    entropy, random = rows["entropy"], rows["random"]
    assert entropy["model"] == "LogisticRegression"
    assert entropy["final_accuracy"]["mean"] == pytest.approx(0.85)
    assert entropy["final_accuracy"]["std"] == pytest.approx(math.sqrt(2 * 0.05**2))
    assert entropy["aulc"]["mean"] == pytest.approx((0.7 + 0.75) / 2)  # (6 + 8) / 20 and (7 + 8) / 20
    assert random["aulc"]["mean"] == pytest.approx((0.6 + 0.525) / 2)  # (5.5 + 6.5) / 20 and (5 + 5.5) / 20
    # Seed 0 reached 0.9 at 30 labels, seed 1 never did.
    assert entropy["labels_to_target"] == {"n": 0, "mean": None, "std": None, "reached": 1, "runs": 2}
    assert [r["labels_to_target"] for r in entropy["runs"]] == [30, None]
    # Paired by seed: final 0.9 - 0.7 and 0.8 - 0.6; AULC 0.7 - 0.6 and 0.75 - 0.525.
    vs = entropy["vs_random"]
    assert vs["final_accuracy"]["per_seed"] == pytest.approx([0.2, 0.2])
    assert vs["final_accuracy"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert vs["aulc"]["mean"] == pytest.approx(0.1625)
    assert vs["aulc"]["std"] == pytest.approx(math.sqrt(2 * 0.0625**2))
    assert random["vs_random"] is None
    assert [p["n_labeled"] for p in entropy["curve"]] == [10, 20, 30]
    assert entropy["curve"][1]["mean"] == pytest.approx(0.75)


def test_pairs_only_with_random_of_equal_settings(tmp_path: Path) -> None:
    make_run(tmp_path, "b0", "bald", 0, [(10, 0.5), (20, 0.8)], model=CNN, budget=5)
    make_run(tmp_path, "rc0", "random", 0, [(10, 0.5), (20, 0.6)], model=CNN, budget=5)
    make_run(tmp_path, "e0", "entropy", 0, [(10, 0.5), (20, 0.7)])
    make_run(tmp_path, "r0", "random", 0, [(10, 0.5), (20, 0.65)])
    result = sweep_summary.summarize(load_runs(tmp_path), target=0.9)
    # Only the budget differs besides model class and acquisition; the CNN-only keys are not columns.
    assert result["setting_columns"] == ["selection.budget"]
    rows = {(r["acquisition"], r["model"]): r for r in result["configurations"]}
    assert rows[("bald", "GalCNN")]["vs_random"]["final_accuracy"]["mean"] == pytest.approx(0.2)
    assert rows[("entropy", "LogisticRegression")]["vs_random"]["final_accuracy"]["mean"] == pytest.approx(0.05)


def test_unfinished_and_broken_runs_are_listed_not_fatal(toy: Path) -> None:
    make_run(toy, "half", "entropy", 2, [(10, 0.5)], finished=False)
    broken = make_run(toy, "bad", "entropy", 3, [(10, 0.5)])
    (broken / "metrics.jsonl").write_text("{not json\n")
    (toy / "failed" / ".hydra").mkdir(parents=True)
    written = sweep_report.write_report(toy, target=0.9)
    assert written["finished_runs"] == 4
    status = {r["path"]: r["status"] for r in written["not_included"]}
    assert status == {"half": "unfinished", "bad": "broken", "failed": "broken"}
    text = (toy / "report.md").read_text()
    assert "| entropy | LogisticRegression | 2 | 0.8500 ± 0.0707 | 0.7250 ± 0.0354 | not reached (1/2 seeds) |" in text
    assert "+0.2000 ± 0.0000 | +0.1625 ± 0.0884 |" in text
    assert "`half` | unfinished" in text
    assert json.loads((toy / "report.json").read_text())["finished_runs"] == 4
    assert (toy / "learning_curves.png").read_bytes().startswith(b"\x89PNG")


def test_summary_disagreeing_with_metrics_is_broken(toy: Path) -> None:
    (toy / "e0" / "summary.json").write_text(json.dumps({"final_test_accuracy": 0.1}))
    runs = {r.path: r for r in load_runs(toy)}
    assert runs["e0"].status == "broken"


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_cli_refuses_directory_without_runs(tmp_path: Path, make: str) -> None:
    target = tmp_path / "nothing"
    if make == "empty":
        (target / "sub").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "runner.report", str(target)], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_tags_are_averaged_per_configuration_and_shown(tmp_path: Path) -> None:
    for seed, tags in ((0, {"to_label_next": 20, "parked": 4}), (1, {"to_label_next": 30})):
        run = make_run(tmp_path, f"e{seed}", "entropy", seed, [(10, 0.5), (20, 0.7)])
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "tags": tags}))
    result = sweep_summary.summarize(load_runs(tmp_path), 0.9)
    assert result["configurations"][0]["tags"] == {"parked": 2.0, "to_label_next": 25.0}
    table = sweep_report.render_markdown(result, "toy")
    assert "tags (items per run)" in table and "parked 2, to_label_next 25" in table


def test_readable_names_keep_only_what_differs() -> None:
    assert sweep_report.short_keys(["selection.budget", "model.estimator.C", "loop.rounds", "model.module.C"]) == {
        "selection.budget": "budget", "model.estimator.C": "estimator.C", "loop.rounds": "rounds",
        "model.module.C": "module.C"}
    rows = [
        {"project": "toy", "acquisition": "entropy", "model": "LogisticRegression",
         "settings": {"selection.budget": 10, "loop.rounds": 5}},
        {"project": "toy", "acquisition": "random", "model": "LogisticRegression",
         "settings": {"selection.budget": 10, "loop.rounds": 5}},
        {"project": "toy", "acquisition": "entropy", "model": "LogisticRegression",
         "settings": {"selection.budget": 20, "loop.rounds": 5}},
    ]
    columns = ["loop.rounds", "selection.budget"]
    assert sweep_report.readable_names(rows, columns) == [
        "entropy · budget 10", "random · budget 10", "entropy · budget 20"]
    assert sweep_report.readable_names(rows[:1], columns) == ["entropy"]  # nothing differs: the acquisition names it


def test_one_panel_per_model_only_when_their_label_ranges_differ(tmp_path: Path) -> None:
    make_run(tmp_path, "c0", "entropy", 0, [(20, 0.5), (70, 0.8)], model=CNN)
    make_run(tmp_path, "l0", "entropy", 0, [(20, 0.5), (1020, 0.9)])
    rows = sweep_summary.summarize(load_runs(tmp_path), 0.9)["configurations"]
    assert [(title, [rows[i]["model"] for i in members]) for title, members in sweep_report.panels(rows)] == [
        ("toy · GalCNN", ["GalCNN"]), ("toy · LogisticRegression", ["LogisticRegression"])]
    make_run(tmp_path / "same", "c0", "entropy", 0, [(20, 0.5), (70, 0.8)], model=CNN)
    make_run(tmp_path / "same", "l0", "entropy", 0, [(20, 0.6), (70, 0.7)])
    rows = sweep_summary.summarize(load_runs(tmp_path / "same"), 0.9)["configurations"]
    assert sweep_report.panels(rows) == [("toy", [0, 1])]


def test_difference_from_random_is_paired_by_seed_at_each_count(toy: Path) -> None:
    rows = by_acquisition(sweep_summary.summarize(load_runs(toy), target=0.8))
    curve = rows["entropy"]["vs_random"]["curve"]
    # Seed 0: 0, 0.1, 0.2; seed 1: 0.1, 0.3, 0.2 (entropy minus random at 10, 20 and 30 labels).
    assert [p["n_labeled"] for p in curve] == [10, 20, 30]
    assert [p["mean"] for p in curve] == pytest.approx([0.05, 0.2, 0.2])
    assert [p["std"] for p in curve] == pytest.approx([math.sqrt(2 * 0.05**2), math.sqrt(2 * 0.1**2), 0.0], abs=1e-12)
    # Labels to 0.8: entropy 30 and 20, random never and never: no seed has both.
    assert rows["entropy"]["vs_random"]["labels_to_target"]["n"] == 0


def test_sweep_page_and_figures(toy: Path) -> None:
    (toy / "e0" / "report.html").write_text("<!DOCTYPE html><title>run</title>")
    sweep_report.write_report(toy, target=0.9)
    figures = ("learning_curves.png", "difference_from_random.png", "aulc_labels_to_target.png")
    first = {name: (toy / name).read_bytes() for name in figures}
    assert all(image.startswith(b"\x89PNG") for image in first.values())
    page = (toy / "report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 3
    assert '<a href="e0/report.html">' in page and 'href="e1/report.html"' not in page  # only where a page exists
    assert "<strong>entropy</strong>" in page and "+0.1625 ± 0.0884" in page
    assert "![difference from random](difference_from_random.png)" in (toy / "report.md").read_text()
    sweep_report.write_report(toy, target=0.9)
    assert {name: (toy / name).read_bytes() for name in figures} == first  # no dates, no software tag
    assert (toy / "report.html").read_text(encoding="utf-8") == page
