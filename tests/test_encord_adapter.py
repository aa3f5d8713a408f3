"""The Encord adapter against the in-memory stand-in: credentials, reading, images, applying actions."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.sources import encord_sdk
from plugins.sources.encord_sdk import (
    CredentialsError,
    EncordAdapter,
    EncordError,
    ImageCache,
    Retry,
    build_dataset,
    download_images,
    read_credentials,
)
from tests.encord_fake import Faults, answer_key, memory_project

NO_WAIT = Retry(attempts=3, base_delay=0.0, sleep=lambda s: None)


def adapter_for(project, bundle_size: int = 8) -> EncordAdapter:
    return EncordAdapter(project, "digit", bundle_size=bundle_size, retry=NO_WAIT)


# --- credentials ----------------------------------------------------------------------------------------
def test_missing_credentials_name_both_variables_in_one_line():
    with pytest.raises(CredentialsError) as caught:
        read_credentials({})
    message = str(caught.value)
    assert "ENCORD_SSH_KEY_FILE" in message and "ENCORD_SSH_KEY" in message and "\n" not in message
    from runner.errors import from_plugin

    assert from_plugin(caught.value).exit_code == 2


def test_unreadable_key_file_is_reported_without_its_content(tmp_path):
    with pytest.raises(CredentialsError, match="ENCORD_SSH_KEY_FILE"):
        read_credentials({"ENCORD_SSH_KEY_FILE": str(tmp_path / "absent")})
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(CredentialsError):
        read_credentials({"ENCORD_SSH_KEY_FILE": str(empty)})


def test_key_file_wins_over_key_and_key_never_shows_in_repr(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-body\n")
    found = read_credentials({"ENCORD_SSH_KEY_FILE": str(key_file), "ENCORD_SSH_KEY": "other"})
    assert found.key_path == key_file and found.key is None
    found = read_credentials({"ENCORD_SSH_KEY": "secret-body"})
    assert found.key == "secret-body" and "secret-body" not in repr(found)


def test_login_failure_message_redacts_the_key(monkeypatch):
    from encord.user_client import EncordUserClient

    def refuse(**kwargs):
        raise ValueError(f"cannot parse {kwargs['ssh_private_key']}")

    monkeypatch.setattr(EncordUserClient, "create_with_ssh_private_key", staticmethod(refuse))
    with pytest.raises(EncordError) as caught:
        encord_sdk.login(encord_sdk.Credentials(key="secret-body", source="ENCORD_SSH_KEY"), "p")
    assert "secret-body" not in str(caught.value) and "ENCORD_SSH_KEY" in str(caught.value)


# --- reading ----------------------------------------------------------------------------------------------
def test_import_lists_every_row_including_unlabelled_and_reads_the_radio_class(tmp_path):
    project = memory_project(tmp_path, n=40, labelled=12)
    adapter = adapter_for(project)
    data = build_dataset(adapter, tmp_path / "cache", fetch=encord_sdk.fetch_url)
    assert len(data.item_ids) == 40 and (data.labels >= 0).sum() == 12
    assert data.class_names == [str(d) for d in range(10)]
    assert set(data.extra["stage"]) == {"Annotate 1", "Complete"}
    assert data.images.shape == (40, 28, 28) and data.images.min() >= 0.0 and data.images.max() <= 1.0
    key = {h: v for h, v in answer_key(project.image_dir.parent).items()}
    for data_hash, label in zip(data.item_ids, data.labels, strict=True):
        if label >= 0:
            assert str(label) == key[data_hash]
    # initialised in bundles of 8: 40 rows -> 5 requests; every row now has a label row
    batches = [h for kind, h in project.server_calls if kind == "initialise_labels"]
    assert [len(b) for b in batches] == [8] * 5
    assert all(r["metadata"]["label_hash"] for r in project.records.values())


def test_unknown_classification_lists_the_radio_ones(tmp_path):
    adapter = EncordAdapter(memory_project(tmp_path), "colour", retry=NO_WAIT)
    with pytest.raises(Exception, match="radio classifications: digit"):
        adapter.class_names()


def test_transient_errors_while_reading_are_retried(tmp_path):
    faults = Faults().fail("list_label_rows_v2", times=2).fail("initialise_labels", times=1)
    project = memory_project(tmp_path, faults=faults)
    rows, infos = adapter_for(project).read_rows()
    assert len(infos) == 40 and len(faults.raised) == 3


# --- images -------------------------------------------------------------------------------------------------
def test_cache_is_content_addressed_and_a_rerun_downloads_nothing(tmp_path):
    calls = []

    def fetch(url):
        calls.append(url)
        return b"same bytes" if url.endswith("a") else url.encode()

    cache = ImageCache(tmp_path / "cache")
    links = {"h1": "u/a", "h2": "v/a", "h3": "w/b"}
    download_images(links, cache, workers=2, retry=NO_WAIT, fetch=fetch)
    assert len(calls) == 3
    assert cache.index["h1"] == cache.index["h2"]  # identical content stored once
    assert len(list((tmp_path / "cache" / "objects").rglob("*"))) == 2 + 2  # two folders, two files
    download_images(links, ImageCache(tmp_path / "cache"), retry=NO_WAIT, fetch=fetch)
    assert len(calls) == 3


def test_failed_download_is_retried_then_reported_and_the_rest_kept(tmp_path):
    attempts: dict[str, int] = {}

    def fetch(url):
        attempts[url] = attempts.get(url, 0) + 1
        if url == "flaky" and attempts[url] < 2:
            raise ConnectionError("reset")
        if url == "broken":
            raise TimeoutError("timed out")
        return url.encode()

    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(EncordError, match="1 of 3 images") as caught:
        download_images({"a": "flaky", "b": "broken", "c": "fine"}, cache, retry=NO_WAIT, fetch=fetch)
    assert "broken" not in str(caught.value) or "b:" in str(caught.value)  # names the data hash, not the URL
    assert attempts == {"flaky": 2, "broken": 3, "fine": 1}
    again = ImageCache(tmp_path / "cache")
    assert again.has("a") and again.has("c") and not again.has("b")


# --- applying ----------------------------------------------------------------------------------------------
def plan_for(project, n_selected: int = 10) -> list[dict]:
    from plugins.actions.encord import plan

    waiting = [
        r["metadata"]
        for r in project.records.values()
        if r["metadata"]["workflow_graph_node"]["title"] == "Annotate 1"
    ]
    items = [{"data_hash": m["data_hash"], "title": m["data_title"], "stage": "Annotate 1"} for m in waiting]
    selected = [{**item, "rank": rank} for rank, item in enumerate(items[:n_selected], 1)]
    return plan(selected, items[n_selected:], [], {"Complete"}, 0, actions=["priority", "complete"])


def priorities(project) -> dict[str, float | None]:
    return {h: r["metadata"]["priority"] for h, r in project.records.items()}


def test_apply_sets_priorities_by_rank_and_is_idempotent(tmp_path):
    project = memory_project(tmp_path)
    adapter = adapter_for(project)
    adapter.read_rows()
    records = plan_for(project)
    adapter.apply(records)
    assert all(r["status"] == "applied" for r in records)
    by_rank = sorted((r for r in records if r["action"] == "priority"), key=lambda r: r["rank"])
    assert [priorities(project)[r["data_hash"]] for r in by_rank][:2] == [1.0, pytest.approx(1.0 - 0.4 / 9)]
    completed = {r["data_hash"] for r in records if r["action"] == "complete"}
    assert all(
        project.records[h]["metadata"]["workflow_graph_node"]["title"] == "Complete" for h in completed
    )
    before = len([c for c in project.server_calls if c[0] != "list_label_rows_v2"])
    for record in records:
        record["status"] = "planned"  # as if the record had been lost: the platform state decides
    adapter.apply(records)
    after = len([c for c in project.server_calls if c[0] != "list_label_rows_v2"])
    assert after == before and all(r["status"] == "applied" for r in records)


def test_transient_errors_are_retried_with_backoff(tmp_path):
    waits = []
    faults = Faults().fail("set_priority", times=2)
    project = memory_project(tmp_path, faults=faults)
    adapter = EncordAdapter(project, "digit", bundle_size=8, retry=Retry(4, 0.5, 10.0, sleep=waits.append))
    adapter.read_rows()
    records = plan_for(project)
    adapter.apply(records)
    assert all(r["status"] == "applied" for r in records)
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_partial_failure_is_recorded_and_a_rerun_finishes_only_the_rest(tmp_path):
    project = memory_project(tmp_path)
    adapter = adapter_for(project, bundle_size=4)
    adapter.read_rows()
    records = plan_for(project)
    target = next(r["data_hash"] for r in records if r["action"] == "priority" and r["rank"] == 6)
    project.faults = Faults().fail("set_priority", times=99, transient=False, when=lambda h: target in h)
    saved = []
    adapter.apply(records, checkpoint=lambda: saved.append(1))
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["action"] for r in failed} == {"priority"} and len(failed) == 4  # one bundle of four
    assert all("AuthorisationError" in r["error"] for r in failed)
    assert saved  # the record was checkpointed along the way
    project.faults = None
    calls_before = len(project.server_calls)
    adapter.apply(records)
    assert all(r["status"] == "applied" for r in records)
    new_calls = [c for c in project.server_calls[calls_before:] if c[0] == "set_priority"]
    assert [sorted(c[1]) for c in new_calls] == [sorted(r["data_hash"] for r in failed)]


def test_a_bundle_that_failed_halfway_is_finished_from_the_platform_state(tmp_path):
    project = memory_project(tmp_path)
    adapter = adapter_for(project, bundle_size=8)
    adapter.read_rows()
    records = [r for r in plan_for(project) if r["action"] == "priority"][:8]
    second = {r["data_hash"] for r in records[4:]}
    project.faults = Faults().fail("set_priority", transient=False, when=lambda h: bool(second & set(h)))
    rows = {str(r.data_hash): r for r in project.list_label_rows_v2()}
    with pytest.raises(Exception, match="not allowed"), project.create_bundle(bundle_size=4) as bundle:
        for record in records:  # the SDK sends these as two requests of four; the second fails
            rows[record["data_hash"]].set_priority(priority=record["value"], bundle=bundle)
    calls_before = len(project.server_calls)
    adapter.apply(records)
    sent = [sorted(h) for kind, h in project.server_calls[calls_before:] if kind == "set_priority"]
    assert sent == [sorted(second)]
    assert all(priorities(project)[r["data_hash"]] == pytest.approx(r["value"]) for r in records)


def test_reopen_and_complete_follow_the_sdk_rules(tmp_path):
    project = memory_project(tmp_path)
    adapter = adapter_for(project)
    adapter.read_rows()
    done = next(
        h for h, r in project.records.items() if r["metadata"]["workflow_graph_node"]["title"] == "Complete"
    )
    waiting = next(
        h for h, r in project.records.items() if r["metadata"]["workflow_graph_node"]["title"] == "Annotate 1"
    )
    records = [
        {"data_hash": done, "action": "reopen", "value": None, "status": "planned"},
        {"data_hash": waiting, "action": "complete", "value": None, "status": "planned"},
        {"data_hash": "missing", "action": "priority", "value": 1.0, "status": "planned"},
    ]
    adapter.apply(records)
    assert project.records[done]["metadata"]["workflow_graph_node"]["title"] == "Annotate 1"
    assert project.records[waiting]["metadata"]["workflow_graph_node"]["title"] == "Complete"
    assert project.records[waiting]["metadata"]["priority"] is None
    assert records[2]["status"] == "failed" and "not in the project" in records[2]["error"]


def test_held_out_split_is_fixed_by_data_hash():
    hashes = [f"h{i}" for i in range(2000)]
    share = np.mean([encord_sdk.held_out(h, 0.2) for h in hashes])
    assert 0.17 < share < 0.23
    assert [encord_sdk.held_out(h, 0.2) for h in hashes[:50]] == [
        encord_sdk.held_out(h, 0.2) for h in hashes[:50]
    ]
