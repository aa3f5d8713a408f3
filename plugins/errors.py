"""The two failures a plugin reports to the user, rather than raising as a bug.

Plugins import nothing from ``runner/``; the runner turns these into its own one-line errors at the boundary
where it called the plugin: :class:`InputError` exits 2 (the config or data must change), :class:`ServiceError`
exits 1 (an outside service failed; running again may succeed). The message is the whole line the user reads,
so it names the config key or file and what is allowed.
"""


class InputError(ValueError):
    """The values or data given to a plugin cannot be used."""


class ServiceError(RuntimeError):
    """An outside service (a labelling platform, an image download) failed after its retries."""
