"""The ``power:`` settings, checked before any data are read or any fit is run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import SettingsError
from pipeline.simulation.alliance import AllianceProcess, process_from_settings
from pipeline.simulation.design import StudyDesign, design_from_settings
from pipeline.simulation.outcome import COMPONENTS

_KEYS = {"model", "designs", "effects", "sd", "terms", "replications", "alpha", "seed",
         "target", "max_failed_share", "alliance", "level"}


@dataclass(frozen=True)
class PowerSettings:
    """A power analysis.

    Attributes
    ----------
    model
        Name of the model in models.yaml whose terms are tested (default ``primary``).
    designs
        The study designs compared.
    effects
        Term -> true value; terms left out take the fitted model's estimates.
    sd
        Variance component (``therapist``, ``client``, ``client_time``, ``residual``) ->
        true SD (``power.sd``); components left out take the fitted model's SDs. Needed
        where the fit could not estimate a component the planned studies have (one
        therapist: no therapist variance).
    terms
        Terms whose power is reported (default: every term but the intercept).
    replications
        Simulated studies per design.
    alpha
        Significance level of each test.
    seed
        Root seed; replicate ``i`` of design ``d`` gets its own spawned seed sequence.
    target
        Power the smallest adequate design must reach.
    max_failed_share
        A run whose share of failed fits in any design exceeds this stops with a message.
    alliance
        The alliance process the predictors are drawn from (``power.alliance``); ``None``
        when it is to be estimated from the data (:mod:`pipeline.power.process`).
    level
        ``scores`` (alliance simulated as subscale scores) or ``items`` (items simulated
        through the alliance instrument and scored by the project's scoring).
    """

    model: str
    designs: tuple[StudyDesign, ...]
    effects: Mapping[str, float]
    terms: tuple[str, ...]
    replications: int
    alpha: float
    seed: int
    target: float
    max_failed_share: float
    alliance: AllianceProcess | None
    level: str
    sd: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping of every setting (fingerprints checkpoints)."""
        return {
            "model": self.model, "designs": [d.__dict__ for d in self.designs],
            "effects": dict(self.effects), "terms": list(self.terms),
            "replications": self.replications, "alpha": self.alpha, "seed": self.seed,
            "target": self.target, "max_failed_share": self.max_failed_share,
            "alliance": None if self.alliance is None else self.alliance.__dict__,
            "level": self.level, "sd": dict(self.sd),
        }


def _number(block: Mapping[str, Any], key: str, default: Any, low: float, high: float,
            whole: bool = False) -> Any:
    value = block.get(key, default)
    ok = isinstance(value, int) if whole else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"params.yaml: power.{key} is {value!r}; give {kind} from "
                            f"{low:g} to {high:g}.")
    return value


#: The simulator's grouping columns (pipeline/simulation/design.py: session_rows).
_THERAPIST, _CLIENT = "therapist_id", "client_id"


def _check_clients_per_therapist(designs: tuple[StudyDesign, ...], model: str) -> None:
    """Refuse a design with one client per therapist for a model with therapist and
    client random effects.

    Every therapist of such a design has exactly one client, so the two variances are not
    identified (only their sum is): the pre-fit checks treat observed data of that shape
    by ``model.checks.same_grouping`` (drop the therapist level, or refuse the model;
    :mod:`pipeline.models.checks`), and a replicate fitted with a simpler model than the
    one planned counts as failed (:func:`pipeline.power.replicate.fit_terms`), so every
    replicate would fail at run time. A model unknown to models.yaml is left to
    :func:`pipeline.power.replicate.check_model`.
    """
    from pipeline.models.spec import load_specs

    try:
        random = load_specs().get(model).random
    except KeyError:
        return
    if not {_THERAPIST, _CLIENT} <= set(random.factors):
        return
    for i, design in enumerate(designs):
        if design.clients_per_therapist >= 2:
            continue
        raise SettingsError(
            f"params.yaml: power.designs[{i}].clients_per_therapist is "
            f"{design.clients_per_therapist}: every therapist of this design would have one "
            f"client, so the therapist and client variances of power.model {model!r} "
            f"({random.formula}) cannot be told apart (only their sum is identified). On "
            "observed data of that shape the pre-fit check model.checks.same_grouping "
            "drops the therapist level or refuses the model, so every simulated study would "
            "be fitted with a simpler model than the one planned and count as failed. Give "
            "every therapist at least two clients (clients_per_therapist: 2 or more).")


def _check_therapists(designs: tuple[StudyDesign, ...], model: str, min_levels: int) -> None:
    """Refuse a design with fewer therapists than ``model.checks.min_levels`` for a model
    with therapist random effects.

    A grouping factor with fewer levels has no estimable variance: the pre-fit checks drop
    it (``model.checks.one_level: drop``) or refuse the model, so, as with one client per
    therapist, every replicate would be fitted with a simpler model than the one planned
    and count as failed at run time.
    """
    from pipeline.models.spec import load_specs

    try:
        random = load_specs().get(model).random
    except KeyError:
        return
    if _THERAPIST not in set(random.factors):
        return
    for i, design in enumerate(designs):
        if design.therapists >= min_levels:
            continue
        raise SettingsError(
            f"params.yaml: power.designs[{i}].therapists is {design.therapists}: power.model "
            f"{model!r} ({random.formula}) estimates a therapist variance, which needs at "
            f"least model.checks.min_levels = {min_levels} therapists. With fewer, the pre-fit "
            "checks drop the therapist level or refuse the model (model.checks.one_level), so "
            "every simulated study would be fitted with a simpler model than the one planned "
            f"and count as failed. Give this design at least {min_levels} therapists, or "
            "choose a power.model without therapist random effects.")


def power_settings(block: Mapping[str, Any] | None,
                   default_alliance: Mapping[str, Any] | None = None,
                   min_levels: int = 2) -> PowerSettings:
    """Read and check the ``power:`` block.

    Parameters
    ----------
    block
        ``params["power"]``.
    default_alliance
        An alliance process used when ``power.alliance`` is not given (tests, benchmarks);
        without either, ``alliance`` is ``None``: the power stage estimates the process
        from the data (:func:`pipeline.power.process.estimate_process`).
    min_levels
        ``model.checks.min_levels``: a design needs this many therapists when the model
        has therapist random effects.

    Raises
    ------
    SettingsError
        Naming the setting, the rule and what to do.
    """
    if not isinstance(block, Mapping):
        raise SettingsError("params.yaml: the power: block is missing or not a mapping; "
                            "see the README's power section for an example.")
    unknown = sorted(set(block) - _KEYS)
    if unknown:
        raise SettingsError(f"params.yaml: power.{unknown[0]} is not a setting (known: "
                            f"{', '.join(sorted(_KEYS))}).")
    designs_raw = block.get("designs")
    if not isinstance(designs_raw, list) or not designs_raw:
        raise SettingsError("params.yaml: power.designs must be a non-empty list of "
                            "designs (therapists, clients_per_therapist, sessions).")
    designs = tuple(design_from_settings(d, f"power.designs[{i}]")
                    for i, d in enumerate(designs_raw))
    labels = [d.label for d in designs]
    if len(set(labels)) != len(labels):
        raise SettingsError("params.yaml: two entries of power.designs are the same design; "
                            "remove the duplicate or give each a distinct name.")
    effects_raw = block.get("effects") or {}
    if not isinstance(effects_raw, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool)
            for v in effects_raw.values()):
        raise SettingsError("params.yaml: power.effects must map model terms to numbers, "
                            "e.g. {goal_within: 0.5}.")
    sd_raw = block.get("sd") or {}
    if not isinstance(sd_raw, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for v in sd_raw.values()):
        raise SettingsError("params.yaml: power.sd must map variance components to "
                            "standard deviations >= 0, e.g. {therapist: 1.0}.")
    unknown_sd = sorted(set(map(str, sd_raw)) - set(COMPONENTS))
    if unknown_sd:
        raise SettingsError(f"params.yaml: power.sd names {unknown_sd[0]!r}, which is not a "
                            f"variance component (known: {', '.join(COMPONENTS)}).")
    if "residual" in sd_raw and not sd_raw["residual"] > 0:
        raise SettingsError("params.yaml: power.sd.residual is 0; the residual SD must be "
                            "above 0.")
    terms_raw = block.get("terms") or []
    if not isinstance(terms_raw, list) or not all(isinstance(t, str) for t in terms_raw):
        raise SettingsError("params.yaml: power.terms must be a list of model term names "
                            "(or empty for every term but the intercept).")
    level = block.get("level", "scores")
    if level not in ("scores", "items"):
        raise SettingsError(f"params.yaml: power.level is {level!r}; use `scores` or "
                            "`items`.")
    alliance_block = block.get("alliance") or default_alliance
    if alliance_block is not None and not isinstance(alliance_block, Mapping):
        raise SettingsError("params.yaml: power.alliance must be a mapping (mean, growth, "
                            "therapist_sd, client_sd, session_sd, client_corr, session_corr),"
                            " or left out to estimate the process from the data.")
    if alliance_block is None and level == "items":
        raise SettingsError("params.yaml: power.level is `items`, which needs the latent "
                            "alliance process in power.alliance (the process estimated from "
                            "the data describes scores, which already hold the items' noise);"
                            " give power.alliance or set power.level: scores.")
    model = block.get("model", "primary")
    if not isinstance(model, str) or not model:
        raise SettingsError("params.yaml: power.model must name a model of models.yaml.")
    _check_therapists(designs, model, min_levels)
    _check_clients_per_therapist(designs, model)
    seed = block.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SettingsError(f"params.yaml: power.seed is {seed!r}; give a whole number "
                            ">= 0.")
    return PowerSettings(
        model=model, designs=designs,
        effects={str(k): float(v) for k, v in effects_raw.items()},
        terms=tuple(terms_raw),
        replications=_number(block, "replications", None, 1, 1_000_000, whole=True),
        alpha=float(_number(block, "alpha", 0.05, 1e-6, 0.5)),
        seed=seed,
        target=float(_number(block, "target", 0.8, 0.01, 0.999)),
        max_failed_share=float(_number(block, "max_failed_share", 0.2, 0.0, 1.0)),
        alliance=(None if alliance_block is None
                  else process_from_settings(alliance_block, "power.alliance")),
        level=str(level),
        sd={str(k): float(v) for k, v in sd_raw.items()},
    )
