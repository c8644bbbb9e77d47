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

STATUS_COLORS = {"repaired": "#55A868", "unrepaired": "#C44E52", "censored": "#8C8C8C"}
SCALE_COLORS = {"total": "#333333", **{k: COLORS[k] for k in ("goal", "task", "bond")}}


def course(table: pd.DataFrame, criterion: str, label: str = "",
           statuses: tuple[str, ...] = ("repaired", "unrepaired")) -> tuple[Figure, pd.DataFrame]:
    """Average alliance and wellbeing around an episode, by repair status.

    ``table`` is ``results/ruptures/course.csv``; offsets with fewer than ``min_cell``
    episodes were suppressed there and are not drawn. Values are deviations from each
    client's own mean, averaged over episodes, with their intervals.
    """
    data = table[(table["criterion"] == criterion) & table["status"].isin(statuses)
                 & ~table["suppressed"].astype(bool)].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, variable, ylab in ((axes[0], "alliance", "total alliance (deviation from the "
                                                     "client's mean)"),
                               (axes[1], "wellbeing", "wellbeing (deviation from the "
                                                      "client's mean)")):
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
    axes[0].set_title(f"Alliance around an episode ({label or criterion})")
    axes[1].set_title("Wellbeing around an episode")
    fig.tight_layout()
    return fig, data


def prevalence(table: pd.DataFrame, rater: str = "client") -> tuple[Figure, pd.DataFrame]:
    """Share of clients with at least one episode, per criterion and alliance score.

    ``table`` is ``results/ruptures/prevalence.csv``; suppressed shares are not drawn.
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
    fig.tight_layout()
    return fig, data
