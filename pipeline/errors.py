"""The project's one error hierarchy.

Every error a user can cause (a data file, a setting in ``params.yaml``, an instrument
file, a model specification) is a :class:`PipelineError`. Its message names the file or
setting, the rule that was broken and what to do; the CLI prints it without a traceback
and exits with status :attr:`PipelineError.exit_status` (2), before any output is touched.

A model that cannot be estimated on the data given is not a user error of the run: it is
recorded per model (status ``not estimable`` with the reason) and never stops the other
models or any report; :class:`NotEstimableError` carries that reason inside the model layer.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error a user can cause and fix.

    The message must say where (file or setting), which rule, and what to do.
    """

    exit_status: int = 2


class SettingsError(PipelineError):
    """A setting in ``params.yaml`` (or a file it names) is missing, unknown or invalid."""


class SpecError(PipelineError):
    """A model specification (``pipeline/models.yaml`` or a user's) is invalid."""


class NotEstimableError(PipelineError):
    """A model cannot be estimated on these data (the reason is the message)."""
