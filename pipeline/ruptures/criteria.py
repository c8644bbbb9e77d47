"""Rupture criteria as data: what counts as a drop, and what counts as its repair.

Each criterion is a named entry under ``ruptures.criteria`` in ``params.yaml``. Four kinds
are known; every number of a rule is a setting, none lives in code:

``sd`` (after Gumz, Brähler, Geyer & Erices 2012)
    A drop of at least ``k`` standard deviations from the pre-drop level. The SD combines
    the client's own variability over sessions (``client``: the SD of the series) with the
    variability between clients (``between``: the SD of the client means), and the stricter
    (larger) of the available SDs is used (``combine: max``). Gumz et al. proposed
    reporting a 1-SD and a 2-SD version side by side. The exact formulas of the paper were
    not retrieved; this is the project's operationalisation of its description.
    ``pooled_within`` (the within-client SD pooled over all clients) may be listed instead.
``rci`` (Jacobson & Truax 1991, as the sudden-gains literature uses it)
    A drop larger than measurement error: ``z * SD_0 * sqrt(2) * sqrt(1 - r)``, with
    ``SD_0`` the SD of the clients' first observed scores (the pre-treatment SD of the
    original) and ``r`` the scale's reliability computed by the pipeline (Cronbach's alpha
    or omega, ``reliability``), or a value given under ``ruptures.reliability_override``.
``v_shape`` (the "V" of Stiles et al. 2004)
    A drop (threshold computed as for ``sd``) followed by a return to at least the pre-drop
    level within the repair window. Only such complete V shapes are episodes. Stiles et
    al. called their criterion preliminary, and later studies used other thresholds; the
    threshold here is this project's setting, not a number from that paper.

``repair`` says when an episode ends: ``pre_level`` (the score is back at or above the
pre-drop level) or ``below_threshold`` (the score is no longer a drop of the criterion's
size below the pre-drop level: the strain is over by the criterion's own yardstick).

References
----------
Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). *BMC Medical Research
Methodology, 12*, 10 (criteria for crisis-repair sequences in the working alliance).

Jacobson, N. S., & Truax, P. (1991). Clinical significance: a statistical approach to
defining meaningful change in psychotherapy research. *Journal of Consulting and Clinical
Psychology, 59*(1), 12-19.

Stiles, W. B., et al. (2004). Patterns of alliance development and the rupture-repair
hypothesis. *Journal of Counseling Psychology, 51*(1), 81-92.

Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in cognitive-
behavioral therapy for depression. *Journal of Consulting and Clinical Psychology, 67*(6),
894-904. (R equivalent of the template: package ``suddengains``, ``define_crit1_cutoff``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError

KINDS = ("sd", "rci", "v_shape")
"""Criterion kinds."""

SD_SOURCES = ("client", "between", "pooled_within")
"""Variability a ``sd`` or ``v_shape`` threshold may combine."""

REPAIRS = ("pre_level", "below_threshold")
"""When an episode counts as repaired."""

SCALES = ("total", "goal", "task", "bond")
"""Alliance scores a series can be built from (``total`` = mean of the subscales)."""

SERIES_KEYS = ("client_id", "rater", "scale")
"""Columns that identify one series."""


@dataclass(frozen=True)
class Criterion:
    """One named rupture criterion (an entry of ``ruptures.criteria``).

    Attributes
    ----------
    name
        Key in ``params.yaml`` (e.g. ``gumz_1sd``).
    label
        Short name for tables.
    kind
        One of :data:`KINDS`.
    k
        Multiple of the SD (``sd``, ``v_shape``).
    sd
        SD sources combined (``sd``, ``v_shape``).
    combine
        ``max`` (the stricter) or ``min``.
    z
        Critical value (``rci``).
    reliability
        Column of the reliability table used (``alpha`` or ``omega_total``; ``rci``).
    repair
        One of :data:`REPAIRS`.
    plain
        One sentence in plain words for the report.
    """

    name: str
    label: str
    kind: str
    repair: str
    k: float = 1.0
    sd: tuple[str, ...] = ("client", "between")
    combine: str = "max"
    z: float = 1.96
    reliability: str = "alpha"
    plain: str = ""

    @property
    def repaired_only(self) -> bool:
        """Whether only repaired episodes count (the V shape)."""
        return self.kind == "v_shape"


@dataclass(frozen=True)
class Rules:
    """Rules shared by every criterion (``ruptures.rules``).

    Attributes
    ----------
    max_gap
        Missed sessions bridged: two observed sessions further apart than ``max_gap + 1``
        session numbers are in different segments; no drop is read across the gap, and
        an episode open at the gap is censored there.
    pre_sessions
        The pre-drop level is the mean of up to this many previous observed sessions of
        the same segment.
    window
        A repair counts when it comes at most ``window`` session numbers after the
        rupture session. An episode with an observed session beyond the window and no
        repair is unrepaired; one whose series (or segment) ends earlier is censored.
    min_sessions_client_sd
        Observed sessions needed before a client's own SD is used.
    """

    max_gap: int = 2
    pre_sessions: int = 1
    window: int = 3
    min_sessions_client_sd: int = 3


def _setting(entry: Mapping[str, Any], key: str, where: str, kind: type, default: Any) -> Any:
    value = entry.get(key, default)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"params.yaml: {where}.{key} must be a {kind.__name__}, not "
                            f"{value!r}. Correct it under ruptures: in params.yaml.") from exc


def load_rules(cfg: Mapping[str, Any]) -> Rules:
    """Read ``ruptures.rules``; unknown keys and negative values are errors."""
    entry = dict(cfg.get("rules") or {})
    unknown = set(entry) - set(Rules.__dataclass_fields__)
    if unknown:
        raise SettingsError(f"params.yaml: ruptures.rules has unknown keys {sorted(unknown)}; "
                            f"known: {sorted(Rules.__dataclass_fields__)}.")
    rules = Rules(**{k: _setting(entry, k, "ruptures.rules", int, getattr(Rules(), k))
                     for k in Rules.__dataclass_fields__})
    if rules.max_gap < 0 or rules.pre_sessions < 1 or rules.window < 1:
        raise SettingsError("params.yaml: ruptures.rules needs max_gap >= 0, pre_sessions >= 1 "
                            "and window >= 1.")
    return rules


def load_criteria(cfg: Mapping[str, Any]) -> tuple[Criterion, ...]:
    """Read ``ruptures.criteria`` into :class:`Criterion` objects, checking every key.

    Raises
    ------
    SettingsError
        Naming the criterion and key, for an unknown kind, SD source, repair rule or key.
    """
    entries = cfg.get("criteria") or {}
    if not entries:
        raise SettingsError("params.yaml: ruptures.criteria is empty; name at least one "
                            "criterion (see pipeline/ruptures/criteria.py).")
    known = set(Criterion.__dataclass_fields__) - {"name"}
    out = []
    for name, raw in entries.items():
        entry = dict(raw or {})
        where = f"ruptures.criteria.{name}"
        unknown = set(entry) - known
        if unknown:
            raise SettingsError(f"params.yaml: {where} has unknown keys {sorted(unknown)}; "
                                f"known: {sorted(known)}.")
        kind = str(entry.get("kind", ""))
        if kind not in KINDS:
            raise SettingsError(f"params.yaml: {where}.kind must be one of {KINDS}, not "
                                f"{kind!r}.")
        repair = str(entry.get("repair", "pre_level" if kind == "v_shape" else
                               "below_threshold"))
        if repair not in REPAIRS:
            raise SettingsError(f"params.yaml: {where}.repair must be one of {REPAIRS}.")
        sources = tuple(str(s) for s in entry.get("sd", ("client", "between")))
        bad = [s for s in sources if s not in SD_SOURCES]
        if bad or not sources:
            raise SettingsError(f"params.yaml: {where}.sd lists unknown sources {bad}; use "
                                f"some of {SD_SOURCES}.")
        combine = str(entry.get("combine", "max"))
        if combine not in ("max", "min"):
            raise SettingsError(f"params.yaml: {where}.combine must be max or min.")
        reliability = str(entry.get("reliability", "alpha"))
        if reliability not in ("alpha", "omega_total"):
            raise SettingsError(f"params.yaml: {where}.reliability must be alpha or "
                                "omega_total.")
        k = _setting(entry, "k", where, float, 1.0)
        z = _setting(entry, "z", where, float, 1.96)
        if k <= 0 or z <= 0:
            raise SettingsError(f"params.yaml: {where}: k and z must be positive.")
        out.append(Criterion(
            name=str(name), label=str(entry.get("label", name)), kind=kind, repair=repair,
            k=k, sd=sources, combine=combine, z=z, reliability=reliability,
            plain=" ".join(str(entry.get("plain", "")).split()),
        ))
    return tuple(out)


def series_sd(series: pd.DataFrame, min_sessions: int) -> pd.DataFrame:
    """Variability of each series and of its rater x scale group.

    Parameters
    ----------
    series
        Long scores: ``client_id, rater, scale, session, score`` (no missing scores).
    min_sessions
        Observed sessions needed for the client's own SD.

    Returns
    -------
    pandas.DataFrame
        One row per series: ``client_id, rater, scale, n_sessions, client`` (its SD,
        ddof = 1; NaN below ``min_sessions``), ``between`` (SD of the client means of the
        rater x scale group), ``pooled_within`` (within-client SD pooled over the group's
        clients with two or more sessions) and ``baseline`` (SD of the clients' first
        observed scores in the group).
    """
    keys = list(SERIES_KEYS)
    grouped = series.groupby(keys, sort=True)["score"]
    per = grouped.agg(n_sessions="size", mean="mean", sd="std").reset_index()
    first = (series.sort_values("session", kind="mergesort").groupby(keys, sort=True)["score"]
             .first().rename("first").reset_index())
    per = per.merge(first, on=keys)
    per["client"] = per["sd"].where(per["n_sessions"] >= min_sessions)
    dev2 = series["score"] - series.groupby(keys)["score"].transform("mean")
    ss = (dev2**2).groupby([series["rater"], series["scale"]]).sum()
    dof = (per.groupby(["rater", "scale"])["n_sessions"].apply(lambda n: (n - 1).sum()))
    group = pd.DataFrame({
        "between": per.groupby(["rater", "scale"])["mean"].std(),
        "pooled_within": np.sqrt(ss / dof.where(dof > 0)),
        "baseline": per.groupby(["rater", "scale"])["first"].std(),
    }).reset_index()
    per = per.merge(group, on=["rater", "scale"], how="left")
    return per[[*keys, "n_sessions", "client", "between", "pooled_within", "baseline"]]


def thresholds(sds: pd.DataFrame, criterion: Criterion,
               reliability: Mapping[str, float]) -> pd.DataFrame:
    """The drop (in score points) each series must show to count under ``criterion``.

    Parameters
    ----------
    sds
        Output of :func:`series_sd`.
    criterion
        The criterion.
    reliability
        Scale -> reliability (for ``rci``); a scale missing here has no RCI threshold.

    Returns
    -------
    pandas.DataFrame
        ``client_id, rater, scale, threshold, note``; ``threshold`` is NaN (and ``note``
        says why) when the criterion cannot be applied to the series.
    """
    out = sds[list(SERIES_KEYS)].copy()
    if criterion.kind == "rci":
        rel = sds["scale"].map(lambda s: reliability.get(str(s), np.nan)).astype(float)
        out["threshold"] = (criterion.z * sds["baseline"] * np.sqrt(2.0)
                            * np.sqrt(1.0 - rel.clip(upper=1.0)))
        out["note"] = np.where(rel.isna(), "reliability unknown (items absent): no RCI",
                               np.where(sds["baseline"].isna(), "baseline SD not estimable",
                                        ""))
        return out
    block = sds[list(criterion.sd)].astype(float)
    sd = block.max(axis=1) if criterion.combine == "max" else block.min(axis=1)
    out["threshold"] = criterion.k * sd
    out["note"] = np.where(sd.isna(), "no SD estimable (too few sessions or clients)", "")
    return out


def scale_reliability(alliance: pd.DataFrame, inst: Any, which: str = "alpha",
                      override: Mapping[str, float] | None = None) -> dict[str, float]:
    """Reliability of each alliance score for the RCI threshold, computed by the pipeline.

    Parameters
    ----------
    alliance
        Validated alliance rows (item columns); pre-scored data have no items.
    inst
        The alliance :class:`~pipeline.instruments.Instrument`.
    which
        ``alpha`` (Cronbach) or ``omega_total`` (McDonald), as
        :func:`pipeline.psychometrics.reliability` computes them over all rows.
    override
        Scale -> reliability given by the user (``ruptures.reliability_override``), e.g.
        a published test-retest value; it takes precedence.

    Returns
    -------
    dict
        Scale (``goal``, ``task``, ``bond``, ``total``) -> reliability. ``total`` is the
        coefficient of all items together (the total is the mean of equal-length
        subscales). Scales whose items are absent are left out, unless overridden.
    """
    from pipeline.psychometrics import cronbach_alpha, omega_total, reliability
    from pipeline.score import keyed_items

    out: dict[str, float] = {}
    if set(inst.item_columns) <= set(alliance.columns):
        rel = reliability(alliance, inst)
        for rec in rel.itertuples(index=False):
            value = getattr(rec, which)
            if pd.notna(value):
                out[str(rec.scale)] = float(value)
        items = keyed_items(alliance, inst).dropna()
        if len(items) > inst.n_items:
            x = items.to_numpy(dtype=float)
            out["total"] = cronbach_alpha(x)[0] if which == "alpha" else omega_total(x)[0]
    for scale, value in (override or {}).items():
        if str(scale) not in SCALES or not 0 < float(value) < 1:
            raise SettingsError(f"params.yaml: ruptures.reliability_override.{scale} must "
                                f"name one of {SCALES} with a value between 0 and 1.")
        out[str(scale)] = float(value)
    return out
