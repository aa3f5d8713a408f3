"""Encord workflow projects: the whole platform integration, one job per module.

- ``credentials``: the private key from the environment, and logging in;
- ``retry``: which SDK errors are worth another attempt, and jittered exponential backoff;
- ``reading``: rows, labels, workflow stages and signed image URLs, without changing anything;
- ``writing``: applying the platform records of an action plan (idempotent, bundled, resumable);
- ``images``: a content-addressed image cache, downloads and decoding;
- ``platform``: :class:`~plugins.encord.platform.EncordPlatform`, what ``project.source`` returns;
- ``actions``: the pure planner of a round's records (``act.function``);
- ``standin_project``: an in-process stand-in of the SDK's ``Project``, label rows and bundles (exports on
  disk, tests), with ``standin_workflow`` (its stages, tasks and issues) and ``label_dicts`` (label-row dicts
  made and read by the SDK itself);
- ``export``: exports on disk as a project, and ``python -m plugins.encord.export``; ``export_files``: an
  export's files, read and checked;
- ``contract``: every SDK call these modules make (checked against the installed ``encord`` by the tests).
"""
