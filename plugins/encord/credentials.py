"""Credentials come only from the environment (``ENCORD_SSH_KEY_FILE``, else ``ENCORD_SSH_KEY``).

They are handed to the SDK and nowhere else: never logged, never written, never part of an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugins.encord.errors import CredentialsError, EncordError

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []

CREDENTIAL_VARIABLES = ("ENCORD_SSH_KEY_FILE", "ENCORD_SSH_KEY")
DEFAULT_DOMAIN = "https://api.encord.com"


@dataclass(frozen=True)
class Credentials:
    """Where the private key came from. ``repr`` never shows the key itself."""

    key: str | None = field(default=None, repr=False)
    key_path: Path | None = None
    source: str = ""


def read_credentials(environ: dict[str, str] | None = None) -> Credentials:
    """The key named by the environment, or :class:`CredentialsError` naming both variables in one line."""
    env = os.environ if environ is None else environ
    names = " or ".join(CREDENTIAL_VARIABLES)
    path = env.get("ENCORD_SSH_KEY_FILE", "").strip()
    if path:
        key_path = Path(path).expanduser()
        try:
            with open(key_path, encoding="utf-8") as handle:
                readable = bool(handle.read(1))
        except OSError:
            readable = False
        if not readable:
            raise CredentialsError(
                f"Encord credentials: ENCORD_SSH_KEY_FILE points at an unreadable or empty file; set {names}"
            )
        return Credentials(key_path=key_path, source="ENCORD_SSH_KEY_FILE")
    key = env.get("ENCORD_SSH_KEY", "")
    if key.strip():
        return Credentials(key=key, source="ENCORD_SSH_KEY")
    raise CredentialsError(
        f"Encord credentials missing: set {names} (a private key file path, or the key itself)"
    )


def login(credentials: Credentials, project_hash: str, domain: str = DEFAULT_DOMAIN) -> Any:
    """A live ``encord.project.Project``. Failures become one line that never carries the key."""
    from encord.user_client import EncordUserClient

    try:
        client = EncordUserClient.create_with_ssh_private_key(
            ssh_private_key=credentials.key, ssh_private_key_path=credentials.key_path, domain=domain
        )
        return client.get_project(project_hash=project_hash)
    except Exception as exc:  # the SDK raises many types; all end the run the same way
        reason = redact(str(exc).splitlines()[0] if str(exc) else "", credentials)
        raise EncordError(
            f"cannot open Encord project {project_hash} with the key from {credentials.source}: "
            f"{type(exc).__name__}{': ' + reason if reason else ''}"
        ) from None


def redact(text: str, credentials: Credentials) -> str:
    """``text`` without any line of the key, cut to 300 characters."""
    # The SDK's messages should not quote the key, but a message must never be the way it leaks.
    if credentials.key:
        for line in filter(None, (s.strip() for s in credentials.key.splitlines())):
            text = text.replace(line, "***")
    return text[:300]
