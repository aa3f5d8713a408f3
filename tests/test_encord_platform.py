"""The Encord platform against the in-memory stand-in: credentials, reading (which writes nothing), images,
applying actions (idempotent, bundled, retried, resumable)."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.encord import credentials as encord_credentials
from plugins.encord.actions import ActionPlanner
from plugins.encord.credentials import Credentials, read_credentials
from plugins.encord.errors import CredentialsError, EncordError
from plugins.encord.images import ImageCache, download_images
from plugins.encord.platform import EncordPlatform, held_out
from plugins.encord.retry import Retry
from tests.encord_fake import Faults, answer_key, memory_project

NO_WAIT = Retry(attempts=3, base_delay=0.0, sleep=lambda s: None)


def platform_for(project, tmp_path, bundle_size: int = 8, retry: Retry = NO_WAIT) -> EncordPlatform:
    return EncordPlatform(project, "digit", tmp_path / "cache", bundle_size=bundle_size, retry=retry)


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
        encord_credentials.login(Credentials(key="secret-body", source="ENCORD_SSH_KEY"), "p")
    assert "secret-body" not in str(caught.value) and "ENCORD_SSH_KEY" in str(caught.value)


# --- reading ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_read_lists_every_row_reads_the_radio_class_and_writes_nothing(tmp_path):
    project = memory_project(tmp_path, n=40, labelled=12)
    before = {h: dict(r["metadata"]) for h, r in project.records.items()}
    data = platform_for(project, tmp_path).read()
    assert len(data.item_ids) == 40 and (data.labels >= 0).sum() == 12
    assert data.class_names == [str(d) for d in range(10)]
    assert set(data.extra["stage"]) == {"Annotate 1", "Complete"}
    assert data.extra["has_label_row"].sum() == 12
    assert data.images.shape == (40, 28, 28) and data.images.min() >= 0.0 and data.images.max() <= 1.0
    key = answer_key(project.image_dir.parent)
    for data_hash, label in zip(data.item_ids, data.labels, strict=True):
        if label >= 0:
            assert str(label) == key[data_hash]
    # Labels are read from the 12 rows with a label row only (bundles of 8); every image through its
    # storage item (40 rows, bundles of 8); and nothing on the platform changed.
    calls = project.server_calls
    assert [len(h) for kind, h in calls if kind == "get_label_rows"] == [8, 4]
    assert [len(h) for kind, h in calls if kind == "get_storage_items"] == [8] * 5
    assert project.writes == [] and not any(kind == "create_label_rows" for kind, _ in calls)
    assert {h: r["metadata"] for h, r in project.records.items()} == before


def test_a_second_read_asks_for_no_image_urls(tmp_path):
    project = memory_project(tmp_path, n=20, labelled=6)
    platform_for(project, tmp_path).read()
    first = len(project.server_calls)
    again = platform_for(project, tmp_path).read()
    assert len(again.item_ids) == 20
    assert not any(kind == "get_storage_items" for kind, _ in project.server_calls[first:])


@pytest.mark.slow
def test_unknown_classification_lists_the_radio_ones(tmp_path):
    platform = EncordPlatform(memory_project(tmp_path), "colour", tmp_path / "cache", retry=NO_WAIT)
    with pytest.raises(Exception, match="radio classifications: digit"):
        platform.read()


def test_transient_errors_while_reading_are_retried(tmp_path):
    faults = (
        Faults()
        .fail("list_label_rows_v2", times=2)
        .fail("get_label_rows", times=1)
        .fail("get_storage_items", times=1)
    )
    project = memory_project(tmp_path, faults=faults)
    data = platform_for(project, tmp_path).read()
    assert len(data.item_ids) == 40 and len(faults.raised) == 4


# --- retries ------------------------------------------------------------------------------------------------
def test_retry_waits_grow_with_jitter_and_stop_at_the_attempts():
    from encord.exceptions import AuthorisationError, GenericServerError

    waits: list[float] = []
    attempts = []

    def flaky():
        attempts.append(1)
        raise GenericServerError("503")

    with pytest.raises(GenericServerError):
        Retry(4, 1.0, 3.0, sleep=waits.append).call("x", flaky)
    # Before try k+1 the wait lies in [d/2, d], d = 1 * 2**(k-1) capped at 3: [0.5, 1], [1, 2], [1.5, 3].
    assert len(attempts) == 4 and len(waits) == 3
    for wait, (low, high) in zip(waits, [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0)], strict=True):
        assert low <= wait <= high
    attempts.clear()

    def refused():
        attempts.append(1)
        raise AuthorisationError("no")

    with pytest.raises(AuthorisationError):
        Retry(4, 1.0, sleep=waits.append).call("x", refused)
    assert len(attempts) == 1  # not transient: no second attempt


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
    assert "b: TimeoutError" in str(caught.value) and "broken" not in str(caught.value)  # the hash, not the URL
    assert attempts == {"flaky": 2, "broken": 3, "fine": 1}
    again = ImageCache(tmp_path / "cache")
    assert again.has("a") and again.has("c") and not again.has("b")


# --- applying ----------------------------------------------------------------------------------------------
def items_in(project, stage: str) -> list[dict]:
    return [
        {
            "data_hash": m["data_hash"],
            "title": m["data_title"],
            "stage": stage,
            "has_label_row": m["label_hash"] is not None,
        }
        for m in (r["metadata"] for r in project.records.values())
        if m["workflow_graph_node"]["title"] == stage
    ]


STAGES = {"Annotate 1": {"kind": "ANNOTATION"}, "Review 1": {"kind": "REVIEW"}, "Complete": {"kind": "DONE"}}


def plan_for(project, n_selected: int = 10, actions=("priority", "complete")) -> list[dict]:
    items = items_in(project, "Annotate 1")
    selected = [{**item, "rank": rank} for rank, item in enumerate(items[:n_selected], 1)]
    planner = ActionPlanner(actions=list(actions), priority_floor=0.6, rest_priority=None, tag=None)
    return planner(selected, items[n_selected:], [], [], STAGES, 0)


def priorities(project) -> dict[str, float | None]:
    return {h: r["metadata"]["priority"] for h, r in project.records.items()}


def test_apply_sets_priorities_by_rank_and_is_idempotent(tmp_path):
    project = memory_project(tmp_path)
    platform = platform_for(project, tmp_path)
    platform.read()
    records = plan_for(project)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    by_rank = sorted((r for r in records if r["action"] == "priority"), key=lambda r: r["rank"])
    assert [priorities(project)[r["data_hash"]] for r in by_rank][:2] == [1.0, pytest.approx(1.0 - 0.4 / 9)]
    completed = {r["data_hash"] for r in records if r["action"] == "complete"}
    assert all(
        project.records[h]["metadata"]["workflow_graph_node"]["title"] == "Complete" for h in completed
    )
    before = len(project.writes)
    for record in records:
        record["status"] = "planned"  # as if the record had been lost: the platform state decides
    platform.apply(records)
    assert len(project.writes) == before and all(r["status"] == "applied" for r in records)


def test_complete_of_a_row_without_a_label_row_is_planned_and_applied_as_two_writes(tmp_path):
    project = memory_project(tmp_path, n=20, labelled=6)
    platform = platform_for(project, tmp_path, bundle_size=4)
    platform.read()
    records = plan_for(project, n_selected=3, actions=["complete"])
    rest = {item["data_hash"] for item in items_in(project, "Annotate 1")[3:]}
    creations = [r for r in records if r["action"] == "create_label_row"]
    assert {r["data_hash"] for r in creations} == rest and len(rest) == 20 - 6 - 3
    assert [r["action"] for r in records][: len(creations)] == ["create_label_row"] * len(creations)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    kinds = [kind for kind, _ in project.writes]
    assert kinds == ["create_label_rows"] * 3 + ["workflow_complete"] * 3  # 11 rows in bundles of 4
    assert sorted(h for kind, hs in project.writes if kind == "create_label_rows" for h in hs) == sorted(rest)
    assert all(project.records[h]["metadata"]["label_hash"] for h in rest)


def test_a_complete_record_without_its_creation_fails_with_a_reason(tmp_path):
    project = memory_project(tmp_path, n=20, labelled=6)
    platform = platform_for(project, tmp_path)
    waiting = items_in(project, "Annotate 1")[0]["data_hash"]
    records = [{"data_hash": waiting, "action": "complete", "value": None, "status": "planned"}]
    platform.apply(records)
    assert records[0]["status"] == "failed" and "create_label_row" in records[0]["error"]
    assert project.writes == []


def test_transient_errors_are_retried_with_backoff(tmp_path):
    waits = []
    faults = Faults().fail("set_priority", times=2)
    project = memory_project(tmp_path, faults=faults)
    platform = platform_for(project, tmp_path, retry=Retry(4, 0.5, 10.0, sleep=waits.append))
    platform.read()
    records = plan_for(project)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_partial_failure_is_recorded_and_a_rerun_finishes_only_the_rest(tmp_path):
    project = memory_project(tmp_path)
    platform = platform_for(project, tmp_path, bundle_size=4)
    platform.read()
    records = plan_for(project)
    target = next(r["data_hash"] for r in records if r["action"] == "priority" and r["rank"] == 6)
    project.faults = Faults().fail("set_priority", times=99, transient=False, when=lambda h: target in h)
    saved = []
    platform.apply(records, checkpoint=lambda: saved.append(1))
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["action"] for r in failed} == {"priority"} and len(failed) == 4  # one bundle of four
    assert all("AuthorisationError" in r["error"] for r in failed)
    assert saved  # the record was checkpointed along the way
    project.faults = None
    calls_before = len(project.server_calls)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    new_calls = [c for c in project.server_calls[calls_before:] if c[0] == "set_priority"]
    assert [sorted(c[1]) for c in new_calls] == [sorted(r["data_hash"] for r in failed)]


def test_a_bundle_that_failed_halfway_is_finished_from_the_platform_state(tmp_path):
    project = memory_project(tmp_path)
    platform = platform_for(project, tmp_path, bundle_size=8)
    platform.read()
    records = [r for r in plan_for(project) if r["action"] == "priority"][:8]
    second = {r["data_hash"] for r in records[4:]}
    project.faults = Faults().fail("set_priority", transient=False, when=lambda h: bool(second & set(h)))
    rows = {str(r.data_hash): r for r in project.list_label_rows_v2()}
    with pytest.raises(Exception, match="not allowed"), project.create_bundle(bundle_size=4) as bundle:
        for record in records:  # the SDK sends these as two requests of four; the second fails
            rows[record["data_hash"]].set_priority(priority=record["value"], bundle=bundle)
    calls_before = len(project.server_calls)
    platform.apply(records)
    sent = [sorted(h) for kind, h in project.server_calls[calls_before:] if kind == "set_priority"]
    assert sent == [sorted(second)]
    assert all(priorities(project)[r["data_hash"]] == pytest.approx(r["value"]) for r in records)


def test_reopen_and_complete_follow_the_sdk_rules(tmp_path):
    project = memory_project(tmp_path)
    platform = platform_for(project, tmp_path)
    done = next(
        h for h, r in project.records.items() if r["metadata"]["workflow_graph_node"]["title"] == "Complete"
    )
    waiting = next(
        h for h, r in project.records.items() if r["metadata"]["workflow_graph_node"]["title"] == "Annotate 1"
    )
    records = [
        {"data_hash": done, "action": "reopen", "value": None, "status": "planned"},
        {"data_hash": waiting, "action": "create_label_row", "value": None, "status": "planned"},
        {"data_hash": waiting, "action": "complete", "value": None, "status": "planned"},
        {"data_hash": "missing", "action": "priority", "value": 1.0, "status": "planned"},
        {"data_hash": waiting, "action": "delete", "value": None, "status": "planned"},
    ]
    platform.apply(records)
    assert project.records[done]["metadata"]["workflow_graph_node"]["title"] == "Annotate 1"
    assert project.records[waiting]["metadata"]["workflow_graph_node"]["title"] == "Complete"
    assert project.records[waiting]["metadata"]["priority"] is None
    assert [r["status"] for r in records] == ["applied", "applied", "applied", "failed", "failed"]
    assert "not in the project" in records[3]["error"] and "not a platform action" in records[4]["error"]


def test_held_out_split_is_fixed_by_data_hash():
    hashes = [f"h{i}" for i in range(2000)]
    share = np.mean([held_out(h, 0.2) for h in hashes])
    assert 0.17 < share < 0.23
    # A larger share only adds items: nothing moves out of the test split when the fraction grows.
    assert all(held_out(h, 0.3) for h in hashes if held_out(h, 0.2))
    assert not any(held_out(h, 0.0) for h in hashes)


# --- the planner's relabels, routes and issues --------------------------------------------------------------
AGENT_STAGES = {**STAGES, "Triage": {"kind": "AGENT", "pathways": ["annotate", "later"]}}


def item(h: str, stage: str, rank: int | None = None, **more) -> dict:
    return {"data_hash": h, "title": h, "stage": stage, "has_label_row": True, "rank": rank, "tags": [], **more}


def test_suspects_go_back_the_way_their_stage_allows_with_an_issue_and_top_priority():
    why = {"given": "3", "suggested": "8", "score": 0.91}
    suspects = [item("done", "Complete", 1, **why), item("review", "Review 1", 2, **why)]
    records = ActionPlanner(actions=["priority"], priority_floor=0.6, rest_priority=None, tag=None)(
        [], [], [], suspects, STAGES, 4)
    by = {(r["data_hash"], r["action"]): r for r in records}
    assert set(by) == {("done", "reopen"), ("review", "reject"), ("done", "issue"), ("review", "issue"),
                       ("done", "priority"), ("review", "priority")}
    assert by[("done", "issue")]["value"] == (
        "Label '3' looks wrong: a model trained without this item suggests '8' (label-issue score 0.91, round 4). "
        "Please check the label and correct it."
    )
    assert by[("done", "issue")]["issue_tags"] == ["label_issue"] and by[("done", "priority")]["value"] == 1.0
    moved = ActionPlanner(actions=[], priority_floor=0.6, rest_priority=None, tag=None, relabel_stage="Annotate 1")(
        [], [], [], suspects, STAGES, 4)
    assert {(r["data_hash"], r["action"], r["value"]) for r in moved if r["action"] == "move"} == {
        ("done", "move", "Annotate 1"), ("review", "move", "Annotate 1")}


def test_an_agent_stage_routes_by_rank_and_the_selection_tags_reach_the_platform_only_if_asked():
    selected = [item("a", "Triage", 1), item("b", "Annotate 1", 2, tags=["to_label_next"])]
    rest = [item("c", "Triage"), item("d", "Annotate 1")]
    routing = ActionPlanner(actions=["tag", "complete"], priority_floor=0.6, rest_priority=None, tag=None,
                            agent_stage="Triage", agent_selected="annotate", agent_rest=None)
    records = routing(selected, rest, [], [], AGENT_STAGES, 0)
    actions = {(r["data_hash"], r["action"]): r["value"] for r in records}
    assert actions[("a", "route")] == "annotate" and ("c", "route") not in actions  # agent_rest=None: it waits
    assert ("c", "complete") not in actions and ("d", "complete") in actions  # Triage's tasks are only routed
    issue = next(r for r in records if r["data_hash"] == "b" and r["action"] == "issue")
    assert issue["issue_tags"] == ["round_000", "to_label_next"] and "rank 2 of 2" in issue["value"]
    quiet = ActionPlanner(actions=["tag"], priority_floor=0.6, rest_priority=None, tag=None, platform_tags=False)(
        selected, rest, [], [], AGENT_STAGES, 0)
    assert {r["action"] for r in quiet} == {"tag"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"actions": ["relabel"]}, "unknown action 'relabel' (known: priority, complete, park, unpark, tag) (label "
                               "suspects go back by selection.relabel_share)"),
    ({"agent_stage": "Triage", "agent_selected": "annotte"}, "agent_selected 'annotte' is not a pathway of Agent "
                                                             "stage 'Triage' (pathways: annotate, later)"),
    ({"agent_stage": "Review 1"}, "agent_stage 'Review 1' is not an Agent stage of the workflow (Agent stages: "
                                  "Triage)"),
])
def test_planner_settings_the_workflow_cannot_take_are_refused_naming_them(settings, message):
    arguments = {"actions": ["priority"], "priority_floor": 0.6, "rest_priority": None, "tag": None, **settings}
    with pytest.raises(ValueError) as caught:  # the settings when the planner is built, the workflow when it plans
        ActionPlanner(**arguments)(selected=[], rest=[], parked=[], suspects=[], workflow=AGENT_STAGES, round_=0)
    assert str(caught.value) == message
