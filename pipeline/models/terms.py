"""A random-effect term of lme4's formula, ``(cols | factor)``: one block of Lambda.

Its own module, with no numerical dependencies, so that reading the model plan
(:mod:`pipeline.models.spec`) and the result tables (:mod:`pipeline.models.results`) does
not import the engine (scipy's optimisers and sparse matrices, about 0.7 s per process:
every notebook kernel and most DVC stages read the plan).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReTerm:
    """One random-effect term ``(cols | factor)``: a lower-triangular block of Lambda.

    Attributes
    ----------
    factor
        Grouping column (e.g. ``client_id``).
    columns
        Random-effect columns (``"(Intercept)"`` or a variable name), in order.
    """

    factor: str
    columns: tuple[str, ...]

    @property
    def n_theta(self) -> int:
        """Parameters of the block (lower triangle)."""
        k = len(self.columns)
        return k * (k + 1) // 2
