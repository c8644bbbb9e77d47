"""Figures of the rupture aggregates: PNG, SVG and the CSV of what is drawn.

Each function takes a table from ``results/ruptures/`` (aggregates only, suppressed cells
already blank) and returns ``(figure, data)`` for :func:`pipeline.figures.save_figure`,
like every figure of :mod:`pipeline.figures`. No figure shows one client's trajectory.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from pipeline.figures import COLORS, integer_axis

NO_EPISODES = "No rupture episodes were found"
"""What an episode figure says in its axes when no rule found an episode."""

STATUS_COLORS = {"repaired": "#55A868", "unrepaired": "#C44E52", "censored": "#8C8C8C"}
SCALE_COLORS = {"total": "#333333", **{k: COLORS[k] for k in ("goal", "task", "bond")}}


def _say(ax: plt.Axes, message: str) -> None:
    """Write ``message`` in an axes that has nothing to draw (no ticks, no empty grid)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True,
            transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def course(table: pd.DataFrame, criterion: str, label: str = "",
           statuses: tuple[str, ...] = ("repaired", "unrepaired"),
           n_episodes: int | None = None,
           with_outcome: bool = True,
           outcome_label: str = "wellbeing") -> tuple[Figure, pd.DataFrame]:
    """Average alliance and the outcome (``outcome_label``: wellbeing, depression, ...)
    around an episode, by repair status.

    ``table`` is ``results/ruptures/course.csv``; offsets with fewer than ``min_cell``
    episodes were suppressed there and are not drawn. Values are deviations from each
    client's own mean, averaged over episodes, with their intervals. When nothing can be
    drawn, each axes says why in words: :data:`NO_EPISODES` when ``n_episodes`` (the
    criterion's episodes, if known) is 0, else that too few episodes were repaired or
    unrepaired. ``with_outcome`` False (an alliance-only run): the alliance panel only.
    """
    data = table[(table["criterion"] == criterion) & table["status"].isin(statuses)
                 & ~table["suppressed"].astype(bool)
                 & (with_outcome | (table["variable"] == "alliance"))].reset_index(drop=True)
    panels = [("alliance", "total alliance (deviation from the client's mean)")]
    if with_outcome:
        panels.append(("wellbeing", f"{outcome_label} (deviation from the client's mean)"))
    fig, grid = plt.subplots(1, len(panels), figsize=(10 if with_outcome else 5.5, 3.6),
                             squeeze=False)
    axes = list(grid[0])
    for ax, (variable, ylab) in zip(axes, panels, strict=True):
        for status in statuses:
            d = data[(data["variable"] == variable) & (data["status"] == status)]
            if d.empty:
                continue
            ax.plot(d["offset"], d["mean"], marker="o", ms=3, color=STATUS_COLORS[status],
                    label=f"{status} (n = {int(d['n'].max())})")
            ax.fill_between(d["offset"], d["conf_low"], d["conf_high"],
                            color=STATUS_COLORS[status], alpha=0.2, lw=0)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="sessions from the rupture session", ylabel=ylab)
        integer_axis(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize="small")
    if data.empty:
        message = (f"{NO_EPISODES}\nunder this rule" if n_episodes == 0 else
                   "Too few repaired or unrepaired episodes\nto draw (fewer than the minimum "
                   "cell size\nat every session offset)")
        for ax in axes:
            _say(ax, message)
    axes[0].set_title(f"Alliance around an episode ({label or criterion})")
    if with_outcome:
        axes[1].set_title(f"{outcome_label[:1].upper()}{outcome_label[1:]} around an episode")
    fig.tight_layout()
    return fig, data


def episodes_found(prevalence: pd.DataFrame, criterion: str, rater: str = "client",
                   scale: str = "total") -> int | None:
    """Episodes a criterion found on a score (``results/ruptures/prevalence.csv``); None
    when the count is not known (suppressed, or no such row)."""
    rows = prevalence[(prevalence["criterion"] == criterion) & (prevalence["rater"] == rater)
                      & (prevalence["scale"] == scale)] if len(prevalence) else prevalence
    found = pd.to_numeric(rows["n_episodes"], errors="coerce") if len(rows) else None
    return None if found is None or found.isna().any() else int(found.sum())


def prevalence(table: pd.DataFrame, rater: str = "client") -> tuple[Figure, pd.DataFrame]:
    """Share of clients with at least one episode, per criterion and alliance score.

    ``table`` is ``results/ruptures/prevalence.csv``; suppressed shares are not drawn.
    When no bar has a height, the axes say why in words: :data:`NO_EPISODES` (no rule
    found an episode, or none could set a threshold), or that every share is suppressed.
    """
    data = table[(table["rater"] == rater) & table["pct_clients"].notna()].reset_index(
        drop=True)[["criterion", "label", "scale", "n_series", "pct_clients"]]
    labels = list(dict.fromkeys(data["label"]))
    scales = [s for s in ("total", "goal", "task", "bond") if s in set(data["scale"])]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(scales), 1)
    for j, scale in enumerate(scales):
        d = data[data["scale"] == scale].set_index("label").reindex(labels)
        x = [i - 0.4 + width * (j + 0.5) for i in range(len(labels))]
        ax.bar(x, d["pct_clients"], width=width, color=SCALE_COLORS[scale],
               label="Total alliance" if scale == "total" else scale.capitalize())
    ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right")
    ax.set_ylabel("% of clients with at least one episode")
    ax.set_title("Episodes found depend on the criterion")
    if scales:   # no share to draw (e.g. no criterion could set a threshold): no legend
        ax.legend(frameon=False, fontsize="small", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
    if not (data["pct_clients"] > 0).any():
        rows = table[table["rater"] == rater]
        found = pd.to_numeric(rows["n_episodes"], errors="coerce")   # blank: suppressed
        if found.eq(0).all():
            _say(ax, f"{NO_EPISODES} (under any rule)")
        else:
            _say(ax, "No share to draw: the shares with an episode are suppressed\n"
                     "(fewer clients than the minimum cell size)")
    fig.tight_layout()
    return fig, data
