"""Every SDK attribute this package touches, checked by the tests against the installed ``encord``.

Each entry is (class, attribute, keyword arguments the package passes), with None for properties. Anything
shaped like ``encord.project.Project`` that offers these works, which is how the offline stand-in runs the
very same reading and writing code as a live project.
"""

from __future__ import annotations

SDK_CALLS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    (
        "encord.user_client.EncordUserClient",
        "create_with_ssh_private_key",
        ("ssh_private_key", "ssh_private_key_path", "domain"),
    ),
    ("encord.user_client.EncordUserClient", "get_project", ("project_hash",)),
    ("encord.project.Project", "list_label_rows_v2", ("data_hashes", "include_workflow_graph_node")),
    ("encord.project.Project", "create_bundle", ("bundle_size",)),
    ("encord.project.Project", "ontology_structure", None),
    ("encord.project.Project", "workflow", None),
    ("encord.workflow.workflow.Workflow", "stages", None),
    ("encord.workflow.common.WorkflowStageBase", "uuid", None),
    ("encord.workflow.common.WorkflowStageBase", "title", None),
    ("encord.workflow.stages.annotation.AnnotationStage", "stage_type", None),
    ("encord.objects.ontology_structure.OntologyStructure", "get_child_by_title", ("title", "type_")),
    ("encord.objects.ontology_structure.OntologyStructure", "classifications", None),
    ("encord.objects.attributes.RadioAttribute", "options", None),
    ("encord.objects.attributes.RadioAttribute", "name", None),
    ("encord.objects.options.NestableOption", "title", None),
    # Reads labels of rows that have a label row; on a row without one it creates it (a write: apply only).
    ("encord.objects.LabelRowV2", "initialise_labels", ("overwrite", "bundle", "include_signed_url")),
    # Signed image URLs of any row, label row or not, without initialising labels (a read).
    ("encord.objects.LabelRowV2", "initialise_storage_item", ("get_signed_url", "bundle")),
    ("encord.objects.LabelRowV2", "get_storage_item", ()),
    ("encord.storage.StorageItem", "get_signed_url", ()),
    ("encord.objects.LabelRowV2", "get_classification_instances", ()),
    ("encord.objects.LabelRowV2", "set_priority", ("priority", "bundle")),
    ("encord.objects.LabelRowV2", "workflow_reopen", ("bundle",)),
    ("encord.objects.LabelRowV2", "workflow_complete", ("bundle",)),
    ("encord.objects.LabelRowV2", "data_hash", None),
    ("encord.objects.LabelRowV2", "data_title", None),
    ("encord.objects.LabelRowV2", "label_hash", None),
    ("encord.objects.LabelRowV2", "backing_item_uuid", None),
    ("encord.objects.LabelRowV2", "workflow_graph_node", None),
    ("encord.objects.LabelRowV2", "priority", None),
    ("encord.objects.LabelRowV2", "task_uuid", None),
    ("encord.objects.ClassificationInstance", "ontology_item", None),
    ("encord.objects.ClassificationInstance", "get_answer", ("attribute",)),
    ("encord.objects.Classification", "attributes", None),
    # Workflow tasks: found at the stage a row waits at, then acted on (bundled per stage) or given an issue.
    ("encord.workflow.stages.annotation.AnnotationStage", "get_tasks", ("data_hash",)),
    ("encord.workflow.stages.review.ReviewStage", "get_tasks", ("data_hash",)),
    ("encord.workflow.stages.final.FinalStage", "get_tasks", ("data_hash",)),
    ("encord.workflow.stages.agent.AgentStage", "get_tasks", ("data_hash",)),
    ("encord.workflow.stages.agent.AgentStage", "pathways", None),
    ("encord.workflow.stages.agent.AgentPathway", "name", None),
    ("encord.workflow.stages.annotation.AnnotationTask", "data_hash", None),
    ("encord.workflow.stages.annotation.AnnotationTask", "move", ("destination_stage_uuid", "bundle")),
    ("encord.workflow.stages.annotation.AnnotationTask", "issues", None),
    ("encord.workflow.stages.review.ReviewTask", "reject", ("bundle",)),
    ("encord.workflow.stages.review.ReviewTask", "move", ("destination_stage_uuid", "bundle")),
    ("encord.workflow.stages.review.ReviewTask", "issues", None),
    ("encord.workflow.stages.final.FinalStageTask", "move", ("destination_stage_uuid", "bundle")),
    ("encord.workflow.stages.agent.AgentTask", "proceed", ("pathway_name", "bundle")),
    ("encord.workflow.stages.agent.AgentTask", "move", ("destination_stage_uuid", "bundle")),
    ("encord.workflow.stages.agent.AgentTask", "issues", None),
    ("encord.issues.issue_client.TaskIssues", "add_file_issue", ("comment", "issue_tags")),
    ("encord.issues.issue_client.TaskIssues", "list", ()),
    ("encord.issues.issue_client.FileIssue", "comments", None),
    ("encord.issues.issue_client.IssueComment", "content", None),
)
