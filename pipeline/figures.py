"""Publication figures, each saved as PNG and SVG with the numbers behind it as CSV.

Every figure function takes result tables (aggregates only, never client rows) and
returns ``(figure, data)``, where ``data`` is exactly what is drawn, so a reviewer can
redraw it. :func:`save_figure` writes ``<name>.png``, ``<name>.svg`` and ``<name>.csv``
byte-stably: SVG ids are salted with a fixed string and no dates are embedded.

Each published figure is drawn once, by the report cell that shows it: the cell calls
:func:`show`, which, when the pipeline renders the report, saves the files and shows
the saved PNG, so the file and the report's picture are the same bytes and labels.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, MaxNLocator

from pipeline.outputs import atomic_open, write_csv
from pipeline.report import FIGURES_DIR_ENV
from pipeline.tables import (
    apa_zero,
    bounded,
    component_label,
    decimals,
    format_num,
    given,
    percent,
    term_label,
)

SUBSCALES = ("goal", "task", "bond")
#: One palette for every figure: a colour per subscale, per part, and in order per model.
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#C44E52", "#937860", "#DA8BC3",
           "#8C8C8C")
COLORS = {"goal": PALETTE[0], "task": PALETTE[1], "bond": PALETTE[2], "wellbeing": PALETTE[3],
          "total": PALETTE[4], "within": PALETTE[0], "between": PALETTE[1]}
#: Words for the parts of a disaggregated predictor, as the tables say them.
PARTS = {"within": "within client", "between": "between clients"}


#: Words for the specification curve's choices and options (``params.yaml``
#: ``specification_curve:``), the same in the figure and the report's table.
CHOICES = {"within": "within-client part", "lag": "alliance lag (sessions)",
           "random_slope": "client slope on time", "estimation": "estimation",
           "min_sessions": "sessions per client at least"}
OPTIONS = {"person_mean": "client mean removed", "detrended": "client trend removed",
           "none": "none", "uncorrelated": "uncorrelated", "correlated": "correlated",
           "reml": "REML", "ml": "ML"}


def choice_label(choice: str, option: object | None = None) -> str:
    """``random_slope`` -> ``client slope on time``; with an option, ``choice: option``."""
    words = CHOICES.get(choice, choice.replace("_", " "))
    if option is None:
        return words
    return f"{words}: {OPTIONS.get(str(option), str(option))}"


def label(name: str) -> str:
    """Display name of a variable (``goal`` -> ``Goal``), the same in every figure."""
    return name.replace("_", " ").capitalize()


def ci_label(frame: pd.DataFrame) -> str:
    """``95% CI`` at the confidence level of the intervals drawn (the ``conf_level`` column
    of the results; ``model.conf_level`` decides it), ``CI`` when the table has none."""
    level = frame["conf_level"].dropna() if "conf_level" in frame else pd.Series(dtype=float)
    return f"{round(100 * float(level.iloc[0]))}% CI" if len(level) else "CI"


def wrap(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters (a title or label that would
    otherwise run off its panel, e.g. an instrument's full name)."""
    return textwrap.fill(text, width, break_on_hyphens=False)


def integer_axis(ax: Axes, axis: str = "x") -> None:
    """Ticks at whole numbers only (sessions, item numbers)."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


class KindFormatter(Formatter):
    """Tick labels of a kind of number as the tables print it (``pipeline/tables.py``):
    the kind's decimals, a true minus sign, no leading zero when the style says the kind
    cannot exceed 1 (``.25``, ``\u2212.50``, ``1.00``, ``.00``). More decimals only when the
    ticks need them to be told apart (ticks every .005 print ``.875``, not ``.88``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.places = decimals(kind)

    def set_locs(self, locs: Sequence[float]) -> None:
        """Decimals for these ticks: the kind's, more where a tick is not exact at them."""
        places = decimals(self.kind)
        ticks = [float(v) for v in locs if np.isfinite(v)]
        while places < 6 and any(abs(round(v, places) - v) > 1e-9 for v in ticks):
            places += 1
        self.places = places

    def __call__(self, x: float, pos: int | None = None) -> str:
        return apa_zero(format_num(x, self.places), self.kind)


def kind_axis(ax: Axes, kind: str, axis: str = "y") -> None:
    """Tick labels of an axis that shows a quantity of ``kind`` (``power``,
    ``correlation``, ``proportion``, ...; ``pipeline/table_style.yaml``) printed as the
    tables print it (:class:`KindFormatter`) when the style names the kind in
    ``no_leading_zero`` (APA 7, 6.36: ``.80``, not ``0.80``); other kinds keep
    matplotlib's labels (coefficients, scores: ``0.5``). Only the labels change, not where
    the ticks are."""
    if bounded(kind):
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(KindFormatter(kind))


STYLE = {
    "svg.hashsalt": "alliance-pipeline",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}


def apply_style() -> None:
    """Set the project's matplotlib style (fixed fonts and SVG salt: byte-stable output)."""
    plt.rcParams.update(STYLE)  # type: ignore[arg-type]  # rcParams' keys are typed as literals


def save_figure(fig: Figure, data: pd.DataFrame, outdir: str | Path, name: str) -> list[Path]:
    """Write ``name``.png, .svg and .csv into ``outdir`` atomically and close ``fig``."""
    out = Path(outdir)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    # A white background whatever the caller's rcParams (a kernel's inline backend may
    # make figures transparent): the files are read outside the report too.
    with atomic_open(paths[0], "wb") as fh:
        fig.savefig(fh, format="png", dpi=150, metadata={"Software": None},
                    facecolor="white")
    with atomic_open(paths[1], "wb") as fh:
        fig.savefig(fh, format="svg", metadata={"Date": None, "Creator": None},
                    facecolor="white")
    plt.close(fig)
    paths.append(write_csv(data, out / f"{name}.csv"))
    return paths


def describe(name: str, with_outcome: bool = True, outcome: str = "wellbeing") -> str:
    """The one line on what figure ``name`` shows (``pipeline/index.yaml``, as on the front
    page; ``with_outcome`` False: its alliance-only line, where it has one; ``outcome``:
    what the outcome measures, ``report.outcome_noun``): the figure's alternative text in
    the reports, for readers who cannot see it."""
    from pipeline.index import figure_line

    return figure_line(name, with_outcome, outcome=outcome)


def inline(fig: Figure, alt: str) -> None:
    """Show a report's figure that is not published (e.g. an illustration), with ``alt``
    as its alternative text; the picture is the inline backend's, as ``plt.show()``."""
    from IPython.display import display

    display(fig, metadata={"image/png": {"alt": alt}})
    plt.close(fig)


def show(fig: Figure, data: pd.DataFrame, name: str, with_outcome: bool = True,
         outcome: str = "wellbeing") -> None:
    """Show a report's figure; when the pipeline renders the report, publish it as well.

    With ``ALLIANCE_FIGURES_DIR`` set (``pipeline.report.render_many`` sets it for its
    kernels to the staging ``reports/figures``), the figure is saved there as ``name``
    .png/.svg/.csv (:func:`save_figure`) and the saved PNG is what the report shows, at
    the figure's own width in pixels (``figure.dpi``, as the inline figure): one drawing,
    and the published file is exactly the report's picture. Without it (a student in
    JupyterLab) the figure is shown inline and nothing is written. ``with_outcome``
    False: an alliance-only run's figure, described as such (:func:`describe`);
    ``outcome`` names the outcome in that description (``report.outcome_noun``).
    """
    outdir = os.environ.get(FIGURES_DIR_ENV)
    if not outdir:
        plt.show()
        return
    from IPython.display import Image, display

    width = round(fig.get_figwidth() * fig.dpi)
    png = save_figure(fig, data, outdir, name)[0]
    display(Image(data=png.read_bytes(), format="png", width=width,
                  alt=describe(name, with_outcome, outcome)))


def trajectories(traj: pd.DataFrame, outcome_label: str = "wellbeing",
                 alliance_metric: str = "item-mean metric") -> tuple[Figure, pd.DataFrame]:
    """Mean goal, task, bond and the outcome per session with intervals.

    ``traj`` is ``results/describe/trajectories.csv``; suppressed sessions are not drawn.
    ``outcome_label`` names the outcome (e.g. the instrument's name; the title of its
    panel, wrapped) and
    ``alliance_metric`` the alliance scale (e.g. ``"item mean, 1-7"``). Without outcome
    rows (an alliance-only analysis) only the alliance panel is drawn.
    """
    data = traj[~traj["suppressed"].astype(bool)].reset_index(drop=True)
    has_outcome = bool((traj["variable"] == "wellbeing").any())
    fig, axes = plt.subplots(1, 2 if has_outcome else 1, figsize=(10 if has_outcome else 5.5,
                                                                  3.6), squeeze=False)
    ax0 = axes[0][0]
    for var in SUBSCALES:
        d = data[data["variable"] == var]
        ax0.plot(d["session"], d["mean"], marker="o", ms=3, color=COLORS[var],
                 label=label(var))
        ax0.fill_between(d["session"], d["conf_low"], d["conf_high"], color=COLORS[var],
                         alpha=0.2, lw=0)
    ax0.set(xlabel="session", ylabel=f"mean ({alliance_metric})", title="Goal, task and bond")
    ax0.legend(frameon=False)
    if has_outcome:
        d = data[data["variable"] == "wellbeing"]
        ax1 = axes[0][1]
        ax1.plot(d["session"], d["mean"], marker="o", ms=3, color=COLORS["wellbeing"])
        ax1.fill_between(d["session"], d["conf_low"], d["conf_high"],
                         color=COLORS["wellbeing"], alpha=0.2, lw=0)
        # The instrument's name is the title; on the axis it would run off the figure.
        ax1.set(xlabel="session", ylabel="mean score", title=wrap(outcome_label, 46))
    for ax in axes[0]:
        integer_axis(ax)
    fig.tight_layout()
    return fig, data


def distributions(dist: pd.DataFrame,
                  outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Histograms of the session scores (``results/describe/distributions.csv``).

    Only the variables present are drawn (no outcome panel in an alliance-only analysis).
    """
    data = dist[~dist["suppressed"].astype(bool)].reset_index(drop=True)
    variables = [v for v in (*SUBSCALES, "wellbeing") if (dist["variable"] == v).any()]
    fig, axes = plt.subplots(1, max(len(variables), 1), figsize=(3 * max(len(variables), 1),
                                                                 3.0), squeeze=False)
    for ax, var in zip(axes[0], variables, strict=False):
        d = data[data["variable"] == var]
        ax.bar(d["lower"], d["sessions"], width=d["upper"] - d["lower"], align="edge",
               color=COLORS[var], edgecolor="white", lw=0.5)
        title = wrap(outcome_label, 26) if var == "wellbeing" else label(var)
        ax.set(title=title, xlabel="score", ylabel="sessions" if var == "goal" else "")
    fig.tight_layout()
    return fig, data


def alliance_shares(levels: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Where each subscale lives: therapist, client and session shares of its variance.

    One stacked bar per subscale from ``results/alliance_levels.csv`` (readable models
    only); a level the model does not have (one therapist) is left out of its bar, and the
    legend says which levels are drawn.
    """
    parts = (("therapist", "therapist", PALETTE[4]),
             ("client", "client (within therapist)", PALETTE[3]),
             ("session", "session", PALETTE[5]))
    rows = levels[levels["status"].isin(["fitted", "singular"])].reset_index(drop=True)
    data = rows[["subscale", "share_therapist", "share_client", "share_session"]].copy()
    fig, ax = plt.subplots(figsize=(6.0, 0.6 + 0.55 * max(len(rows), 1)))
    left = np.zeros(len(rows))
    for key, text, color in parts:
        share = rows[f"share_{key}"].to_numpy(dtype=float)
        if not np.isfinite(share).any():
            continue
        share = np.nan_to_num(share)
        ax.barh([label(s) for s in rows["subscale"]], share, left=left, color=color,
                edgecolor="white", label=text)
        for y, (x0, w) in enumerate(zip(left, share, strict=True)):
            if w >= 0.06:
                ax.text(x0 + w / 2, y, percent(w), ha="center", va="center", color="white",
                        fontsize=8)
        left += share
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of the variance")
    ax.xaxis.set_major_formatter(lambda v, _: percent(v))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) > 1 else -0.6),
              ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig, data


def coefficient_plot(coefs: pd.DataFrame, model: str = "primary",
                     outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Within- versus between-client effects of goal, task and bond with 95% intervals.
    ``outcome_label`` names the outcome on the axis (``report.outcome_noun``)."""
    terms = [f"{k}_{part}" for k in SUBSCALES for part in ("within", "between")]
    rows = coefs[(coefs["model"] == model) & coefs["term"].isin(terms)]
    data = rows.set_index("term").loc[terms].reset_index()
    ci = ci_label(data)
    data = data[["term", "estimate", "std_error", "conf_low", "conf_high"]].copy()
    data.insert(1, "subscale", data["term"].str.split("_").str[0])
    data.insert(2, "part", data["term"].str.split("_").str[1])
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ypos = {"goal": 2.0, "task": 1.0, "bond": 0.0}
    for part, offset in (("within", 0.12), ("between", -0.12)):
        d = data[data["part"] == part]
        y = np.array([ypos[s] for s in d["subscale"]]) + offset
        ax.errorbar(d["estimate"], y,
                    xerr=[d["estimate"] - d["conf_low"], d["conf_high"] - d["estimate"]],
                    fmt="o", color=COLORS[part], capsize=3, label=PARTS[part])
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(list(ypos.values()), [label(k) for k in ypos])
    ax.set_xlabel(wrap(f"change in {outcome_label} per point of alliance ({ci})", 70))
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig, data


def predicted_wellbeing(coefs: pd.DataFrame, model: str = "primary",
                        span: float = 1.0, points: int = 21,
                        outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Predicted difference in the outcome (``outcome_label``, e.g. ``depression``) across
    each subscale, within and between clients.

    For a session ``x`` points above the client's usual goal score (within), or a client
    whose mean goal score is ``x`` points above the average client (between), the model
    predicts wellbeing ``b * x`` higher, other terms held constant. The band is the
    coefficient's 95% interval times ``x``, which is the exact interval of that difference.
    """
    grid = np.round(np.linspace(-span, span, points), 10)
    rows = []
    prim = coefs[coefs["model"] == model].set_index("term")
    for k in SUBSCALES:
        for part in ("within", "between"):
            c = prim.loc[f"{k}_{part}"]
            lo = np.minimum(c["conf_low"] * grid, c["conf_high"] * grid)
            hi = np.maximum(c["conf_low"] * grid, c["conf_high"] * grid)
            rows.append(pd.DataFrame({"subscale": k, "part": part, "alliance_difference": grid,
                                      "predicted_difference": c["estimate"] * grid,
                                      "conf_low": lo, "conf_high": hi}))
    data = pd.concat(rows, ignore_index=True)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, k in zip(axes, SUBSCALES, strict=True):
        for part in ("within", "between"):
            d = data[(data["subscale"] == k) & (data["part"] == part)]
            ax.plot(d["alliance_difference"], d["predicted_difference"], color=COLORS[part],
                    label=PARTS[part])
            ax.fill_between(d["alliance_difference"], d["conf_low"], d["conf_high"],
                            color=COLORS[part], alpha=0.2, lw=0)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=label(k), xlabel=f"{label(k)}: points above the usual / average")
    axes[0].set_ylabel(wrap(f"predicted difference in {outcome_label}", 36))
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig, data


def diagnostics(diag: pd.DataFrame, model: str = "primary",
                outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Residual and random-effect diagnostics (``results/diagnostics.csv``).

    Top row: normal Q-Q plots of the conditional residuals and of each random effect
    (points near the line: close to normal). Bottom row: mean residual in bins of the
    fitted values, conditional (``y - X beta - Z b``; slopes upwards by shrinkage even
    when the model is right) and marginal (``y - X beta`` against ``X beta``, with 95%
    intervals; flat at zero when the fixed part is right). See
    :mod:`pipeline.diagnostics`. Older tables without the marginal rows draw the
    conditional panel only.
    """
    data = diag[diag["model"] == model].reset_index(drop=True)
    qq = data[data["plot"] == "qq"]
    comps = list(dict.fromkeys(qq["component"]))
    rvf = data[data["plot"] == "residual_vs_fitted"]
    marg = data[data["plot"] == "marginal_residual_vs_fitted"]
    ncol = max(len(comps), 2)
    fig, axes = plt.subplots(2, ncol, figsize=(3.2 * ncol, 6.6), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=False):
        d = qq[qq["component"] == comp]
        lim = float(np.nanmax(np.abs(np.r_[d["x"], d["y"]])))
        ax.plot([-lim, lim], [-lim, lim], color="grey", lw=1)
        ax.scatter(d["x"], d["y"], s=8, color=COLORS["within"])
        ax.set(title=f"{component_label(comp)} (n = {int(d['n'].iloc[0]):,})",
               xlabel="normal quantile", ylabel="standardised quantile" if comp == comps[0] else "")
    for ax in axes[0][len(comps):]:
        ax.set_visible(False)
    ax = axes[1][0]
    ax.axhline(0, color="grey", lw=1)
    ax.plot(rvf["x"], rvf["y"], marker="o", ms=4, color=COLORS["between"])
    ax.set(title="conditional residual (binned)\nslopes by shrinkage",
           xlabel=f"fitted {outcome_label} (with random effects)", ylabel="mean residual")
    ax = axes[1][1]
    if len(marg):
        ax.axhline(0, color="grey", lw=1)
        half = 1.96 * marg["se"].to_numpy(dtype=float)
        ax.errorbar(marg["x"], marg["y"], yerr=half, fmt="o-", ms=4, capsize=2,
                    color=COLORS["within"])
        ax.set(title="marginal residual (binned, 95% CI)\nflat at 0 if the fixed part fits",
               xlabel=f"fitted {outcome_label} (fixed part only)", ylabel="mean residual")
    else:
        ax.set_visible(False)
    for ax in axes[1][2:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig, data


def sensitivity(coefs: pd.DataFrame, models: list[str],
                labels: dict[str, str] | None = None,
                outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Within- and between-client effects of goal, task and bond across models.

    ``labels`` maps a model name to its legend entry (e.g. the title of ``models.yaml``);
    names without one are shown as they are.
    """
    labels = labels or {}
    terms = [f"{k}_{part}" for part in ("within", "between") for k in SUBSCALES]
    data = coefs[coefs["model"].isin(models) & coefs["term"].isin(terms)]
    ci = ci_label(data)
    data = data[["model", "term", "estimate", "conf_low", "conf_high"]].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    step = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        d = data[data["model"] == model].set_index("term").reindex(terms)
        y = np.arange(len(terms))[::-1] + 0.4 - step / 2 - i * step
        ax.errorbar(d["estimate"], y, xerr=[d["estimate"] - d["conf_low"],
                    d["conf_high"] - d["estimate"]], fmt="o", ms=4, capsize=2,
                    color=PALETTE[i % len(PALETTE)],
                    label=textwrap.fill(labels.get(model, model), 34))
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(np.arange(len(terms))[::-1], [term_label(t) for t in terms])
    ax.set_xlabel(wrap(f"change in {outcome_label} per point of alliance ({ci})", 70))
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig, data


def reliability(rel: pd.DataFrame, floor_ceiling: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Cronbach's alpha per session by subscale, and the share of answers at the ceiling.

    ``rel`` is ``results/scoring/reliability.csv``, ``floor_ceiling`` is
    ``results/scoring/floor_ceiling.csv`` (suppressed counts are not drawn). With client
    and therapist forms, only the first instrument in ``rel`` (the client form) is drawn.
    """
    if "instrument" in rel.columns and rel["instrument"].nunique() > 1:
        # Client and therapist forms: the figure shows the first (client) form's items.
        first = rel["instrument"].iloc[0]
        rel = rel[rel["instrument"] == first]
        floor_ceiling = floor_ceiling[floor_ceiling["instrument"] == first]
    per = rel[(rel["subset"] == "session") & rel["alpha"].notna()]
    per = per[["scale", "session", "n", "alpha", "omega_total"]].assign(panel="alpha")
    fc = floor_ceiling[floor_ceiling["pct_ceiling"].notna()]
    fc = fc[["scale", "item_number", "pct_ceiling"]].assign(panel="ceiling")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for scale in dict.fromkeys(per["scale"]):
        d = per[per["scale"] == scale]
        axes[0].plot(d["session"], d["alpha"], marker="o", ms=3,
                     color=COLORS.get(scale, "grey"), label=label(scale))
    axes[0].axhline(0.7, color="grey", lw=1, ls="--")
    axes[0].set(xlabel="session", ylabel="Cronbach's alpha", title="Reliability per session")
    kind_axis(axes[0], "correlation")   # reliabilities print as correlations: .85
    if len(per):
        axes[0].legend(frameon=False)
    else:  # e.g. few clients per session: say so instead of an empty panel
        axes[0].text(0.5, 0.5, "no session has enough clients\nfor a per-session alpha",
                     ha="center", va="center", color="grey", transform=axes[0].transAxes)
    integer_axis(axes[0])
    axes[1].bar(fc["item_number"], fc["pct_ceiling"],
                color=[COLORS.get(s, "grey") for s in fc["scale"]])
    direction = (floor_ceiling["direction"].iloc[0] if "direction" in floor_ceiling.columns
                 and len(floor_ceiling) else "as answered")
    top = "best score (keyed)" if direction == "keyed" else "top option"
    axes[1].set(xlabel="item", ylabel=f"% answers at the {top}", title="Ceiling")
    integer_axis(axes[1])
    shown = sorted(dict.fromkeys(fc["scale"]),
                   key=lambda sc: SUBSCALES.index(sc) if sc in SUBSCALES else len(SUBSCALES))
    axes[1].legend(handles=[Patch(color=COLORS.get(sc, "grey"), label=label(sc))
                            for sc in shown], frameon=False)
    fig.tight_layout()
    return fig, pd.concat([per, fc], ignore_index=True)


def power_curves(power: pd.DataFrame, target: float | None = None) -> tuple[Figure, pd.DataFrame]:
    """Power of each term against the number of therapists, with Monte-Carlo intervals.

    ``power`` is ``results/power.csv``. One line per term (and per clients-per-therapist x
    sessions combination when the designs vary those too); the dashed line is the target.
    """
    from pipeline.tables import term_label

    data = power.copy()
    data["series"] = data["term"].astype(str).map(term_label)
    varied = data.groupby("term")[["clients_per_therapist", "sessions"]].nunique().max().max()
    if varied > 1:
        data["series"] += (" (" + data["clients_per_therapist"].astype(str) + " clients, "
                           + data["sessions"].astype(str) + " sessions)")
    # Legend in the tables' order: goal, task, bond within clients, then between.
    order = {f"{s}_{p}": i for i, (p, s) in enumerate(
        (p, s) for p in ("within", "between") for s in SUBSCALES)}
    data["order"] = data["term"].map(order).fillna(len(order))
    data = data.sort_values(["order", "series", "therapists"], kind="mergesort")
    data = data.drop(columns="order").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    others = iter(PALETTE[3:] * len(data))   # terms that are not a goal/task/bond part
    for series, rows in data.groupby("series", sort=False):
        # The project's palette: the subscale's colour; solid within, dashed between.
        stem, _, part = str(rows["term"].iloc[0]).partition("_")
        color = COLORS[stem] if stem in SUBSCALES else next(others)
        ax.plot(rows["therapists"], rows["power"], marker="o", ms=4, color=color,
                ls="--" if part.startswith("between") else "-", label=series)
        ax.fill_between(rows["therapists"], rows["conf_low"], rows["conf_high"], color=color,
                        alpha=0.15, lw=0)
    if target is not None:
        ax.axhline(target, color="0.3", ls="--", lw=1,
                   label=f"target {given(target, 'power')}")
    alpha = float(data["alpha"].iloc[0]) if len(data) else 0.05
    ax.axhline(alpha, color="0.6", ls=":", lw=1, label=f"alpha {given(alpha, 'p_value')}")
    ax.set(xlabel="therapists", ylabel="power", ylim=(0, 1), title="Power by design")
    kind_axis(ax, "power")
    integer_axis(ax)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig, data.drop(columns="series")


def specification_curve(curve: pd.DataFrame,
                        conf_level: float = 0.95) -> tuple[Figure, pd.DataFrame]:
    """Specification curve: every specification's estimate, sorted, with its choices.

    ``curve`` is ``results/specification_curve.csv``. Top row: the estimates of each term
    sorted from low to high with their intervals (filled: the interval excludes 0).
    Bottom row: which option of each choice the specification above used.
    ``conf_level`` is that of the intervals (``model.conf_level``; the table has no column).
    """
    from pipeline.tables import term_label

    data = curve[curve["estimate"].notna()].copy()
    terms = list(dict.fromkeys(data["term"]))
    choices = ["within", "lag", "random_slope", "estimation", "min_sessions"]
    options = [(c, o) for c in choices for o in dict.fromkeys(data[c].astype(str))]
    fig, axes = plt.subplots(2, max(len(terms), 1), figsize=(4.2 * max(len(terms), 1), 6.5),
                             sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [1.0, 1.1]})
    drawn = []
    for j, term in enumerate(terms):
        rows = data[data["term"] == term].sort_values(["estimate", "spec"], kind="mergesort")
        rows = rows.reset_index(drop=True).assign(rank=lambda d: np.arange(1, len(d) + 1))
        drawn.append(rows)
        top, bottom = axes[0, j], axes[1, j]
        excl = (rows["conf_low"] > 0) | (rows["conf_high"] < 0)
        top.vlines(rows["rank"], rows["conf_low"], rows["conf_high"], color="0.7", lw=1)
        top.scatter(rows["rank"], rows["estimate"], s=14, zorder=3,
                    c=np.where(excl, COLORS["within"], "white"), edgecolors=COLORS["within"])
        top.axhline(0, color="0.3", lw=0.8)
        top.set(title=term_label(term),
                ylabel=f"estimate ({round(100 * conf_level)}% CI)" if j == 0 else "")
        for k, (choice, option) in enumerate(options):
            hit = rows[choice].astype(str) == option
            bottom.scatter(rows.loc[hit, "rank"], np.full(int(hit.sum()), k), s=6,
                           color="0.2", marker="s")
        bottom.set_yticks(range(len(options)))
        bottom.set_yticklabels([choice_label(c, o) for c, o in options]
                               if j == 0 else [], fontsize=7)
        bottom.invert_yaxis()
        bottom.set(xlabel="specification (sorted by estimate)")
        integer_axis(bottom)
        bottom.grid(False)
    fig.tight_layout()
    out = pd.concat(drawn, ignore_index=True) if drawn else data
    return fig, out
