# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ruptures, repairs and endings
#
# **In short.** The working alliance is not constant. Sometimes the collaboration between
# client and therapist comes under strain: the client feels misunderstood, disagrees with
# what they are asked to do, or withdraws. Researchers call this a **rupture**. When client
# and therapist notice the strain and talk it through, the relationship can recover, and
# often comes out stronger: a **repair**, a chance to rebuild trust. This report looks for
# the traces of ruptures and repairs in the session-by-session alliance questionnaires,
# using several published rules side by side, and asks whether they go with how the
# outcome changed and with clients ending therapy early. It shows aggregates only: no client
# appears, and groups smaller than `report.min_cell` are suppressed. Where the other numbers
# of a table would give a suppressed one back by subtraction, more are held back with it
# (*secondary suppression*): at least two, adding up to at least that threshold.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import html
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.references import reference_list
from pipeline.report import (
    data_notice,
    has_outcome,
    open_project,
    outcome_higher_worse,
    outcome_label,
    reason_words,
)
from pipeline.ruptures import plots
from pipeline.ruptures.criteria import NO_VARIATION, load_rules, sd_label
from pipeline.ruptures.detect import detect_series
from pipeline.ruptures.endings import events_in_model
from pipeline.tables import (
    counted,
    format_num,
    formatted,
    number,
    percent,
    styled,
    term_label,
)

root, params = open_project(params_file)
results = root / "results" / "ruptures"
min_cell = int(params["report"]["min_cell"])
cfg = params["ruptures"]
figures.apply_style()
meta = json.loads((results / "meta.json").read_text(encoding="utf-8"))
criteria = cfg["criteria"]
labels = {name: str(c.get("label", name)) for name, c in criteria.items()}
noun = outcome_label(params)                       # wellbeing, depression, the outcome
label_noun = outcome_label(params, escaped=False)  # figure labels
worse_up = outcome_higher_worse(params)            # a symptom score kept higher = worse


def esc(text: object) -> str:
    """Text from settings or data, safe inside Markdown/HTML."""
    return html.escape(str(text))


def read(name: str) -> pd.DataFrame:
    """A table of results/ruptures/ (empty when the step did not write it)."""
    path = results / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def show(frame: pd.DataFrame, kind: str = "default", kinds: dict[str, str] | None = None,
         p_values: tuple[str, ...] = (), columns: dict[str, str] | None = None) -> None:
    """Display a table in the reports' style (pipeline.tables.formatted): counts as whole
    numbers, other numbers at the decimals of their kind (``kinds[column]``, else
    ``kind``; pipeline/table_style.yaml), p-values APA, suppressed cells '–'; then the
    columns renamed for readers (``columns``: ``kinds`` and ``p_values`` name the
    results' columns)."""
    display(styled(formatted(frame, p_values=p_values, kinds=kinds, kind=kind)
                   .rename(columns=columns or {})))


display(Markdown(data_notice(params)))
if not has_outcome(params):
    display(Markdown(
        "**Alliance-only analysis:** no outcome file was given, so the part of this report "
        "that links ruptures to change in an outcome is left out."))

# %% [markdown]
# ## What a post-session questionnaire can and cannot see
#
# After each session the client rates the alliance (goal, task and bond; here their mean,
# the **total**, and each part). A rupture happens *inside* a session, between two people;
# the questionnaire only records how the client rated the session afterwards. A sudden
# drop in that rating is therefore an **indicator** of a possible rupture, and a return
# to the earlier level an indicator of a possible repair, not an observation of either.
# Ratings also move from session to session for no particular reason (a bad day, a
# hurried answer): a low rating after a high one tends to be followed by a more usual one
# anyway (*regression to the mean*). The rules below differ mainly in how large a drop
# must be before it counts, so they find very different numbers of episodes (Gumz et al.,
# 2012): they are shown side by side, never as one number.

# %% [markdown]
# ## How each rule decides
#
# An **episode** starts at the session whose score falls at least the rule's threshold
# below the level before it (the mean of up to the previous
# `ruptures.rules.pre_sessions` rated sessions). It is **repaired** when a later session,
# at most `ruptures.rules.window` sessions on, is back at the rule's repair level; it is
# **unrepaired** when the window passed with further sessions and no repair, and
# **censored** when the ratings stop before the window closes: the last sessions of a
# therapy cannot show a repair yet, so they are never called unrepaired. Missed sessions
# are skipped over when they are few (`ruptures.rules.max_gap`); after a longer gap the
# series starts afresh.

# %%
rules = cfg["rules"]
lines = [f"- **{esc(labels[name])}**: {esc(c.get('plain', ''))}." for name, c in criteria.items()]
display(Markdown("\n".join(lines) + (
    f"\n\nShared rules: pre-drop level = mean of up to {int(rules['pre_sessions'])} "
    f"previous rated sessions; repair window {int(rules['window'])} sessions; up to "
    f"{int(rules['max_gap'])} missed sessions bridged; a client's own SD is used from "
    f"{int(rules['min_sessions_client_sd'])} rated sessions on.")))
thr = read("thresholds")
if len(thr):
    tab = thr[thr["rater"] == "client"][["label", "scale", "sd", "reliability", "n_series",
                                         "median_threshold", "q1_threshold", "q3_threshold",
                                         "note"]].copy()
    tab["sd"] = tab["sd"].map(sd_label)
    if tab["note"].isna().all():
        tab = tab.drop(columns="note")
    show(tab, kinds={"median_threshold": "points", "q1_threshold": "points",
                     "q3_threshold": "points", "reliability": "correlation"},
         columns={"label": "rule", "sd": "variability used", "n_series": "clients",
                  "median_threshold": "median drop needed",
                  "q1_threshold": "25th percentile", "q3_threshold": "75th percentile"})
    display(Markdown(
        "*Drop needed*: the smallest fall below the pre-drop level that counts as an "
        "episode, in points of the score. It can differ between clients (a client's own "
        "SD), so the median and the 25th and 75th percentiles over clients are shown. "
        "*Reliability*: the internal consistency the reliable-drop and sudden-dip rules "
        "use for the measurement error ('–' where a rule does not use it)."))
    flat = thr[(thr["rater"] == "client")
               & thr["note"].fillna("").str.contains(NO_VARIATION, regex=False)]
    if len(flat):
        every = len(flat) == int((thr["rater"] == "client").sum())
        where = ("any rule or score" if every else "; ".join(
            f"{esc(labels.get(c, c))} ({', '.join(esc(v) for v in g['scale'])})"
            for c, g in flat.groupby("criterion", sort=False)))
        display(Markdown(
            f"**No rupture threshold can be set** for {where} (blank in the table): "
            "the scores do not vary (the variability the rule uses is 0), so any fall, "
            "however small, would count as a rupture. No episode is looked for there."))
rel_text = ", ".join(f"{esc(k)} {number(v, 'correlation')}" for k, v in meta["reliability"].items())
display(Markdown(
    "The drop needed is in points of the questionnaire's item-mean scale. The Gumz rules "
    "combine the client's own variability with the variability between clients and take "
    "the larger (stricter) one; the reliable-drop rule uses the measurement error implied "
    "by the scale's reliability, computed from these data "
    f"({rel_text or 'not available: no item data, or items that do not vary'}). "
    "The V-shape threshold is this project's setting: Stiles et al. (2004) called their own "
    "criterion preliminary, and later studies used other thresholds. The sudden dip is "
    "this project's rule after the sudden-gains template (Tang & DeRubeis, 1999): the "
    "session must lie far below the sessions before *and* after it (its 'drop needed' is "
    "z times the usual session-to-session SD, computed with the dips left out, so that "
    "the ruptures themselves do not raise the bar), and its drop must also be larger than "
    "the measurement error."))

# %% [markdown]
# ### The rules at work on an invented series
#
# The same made-up series of post-session ratings (invented numbers, not a client of these
# data), read by each rule with the median drop it requires in these data. Red line: the
# session a rupture starts, marked R (repaired; the dashed green line is the repair), U
# (unrepaired: no repair within the window although ratings went on) or C (censored: the
# ratings stop before a repair could be seen).

# %%
demo_sessions = list(range(1, 15))
demo_scores = [4.0, 4.2, 4.1, 3.2, 3.6, 4.2, 4.3, 4.3, 3.9, 3.3, 3.4, 3.4, 3.5, 2.9]
demo_rules = load_rules(cfg)
total_thr = thr[(thr["rater"] == "client") & (thr["scale"] == "total")].set_index(
    "criterion")["median_threshold"] if len(thr) else pd.Series(dtype=float)
total_min = thr[(thr["rater"] == "client") & (thr["scale"] == "total")].set_index(
    "criterion")["median_min_drop"] if len(thr) and "median_min_drop" in thr else {}
shown = [name for name in criteria if pd.notna(total_thr.get(name, np.nan))]
if shown:
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, shown, strict=True):
        c = criteria[name]
        found = detect_series(demo_sessions, demo_scores, float(total_thr[name]), demo_rules,
                              str(c.get("repair", "pre_level" if c["kind"] == "v_shape"
                                         else "below_threshold")),
                              c["kind"] == "v_shape",
                              ((int(c.get("before", 3)), int(c.get("after", 3)))
                               if c["kind"] == "dip" else None),
                              float(np.nan_to_num(total_min.get(name, 0.0))))
        ax.plot(demo_sessions, demo_scores, marker="o", ms=3, color="#333333")
        for ep in found:
            ax.axvline(ep["rupture_session"], color="#C44E52", lw=1.5)
            if ep["repair_session"] is not None:
                ax.axvline(ep["repair_session"], color="#55A868", lw=1.5, ls="--")
            ax.text(ep["rupture_session"] + 0.3, 4.55, ep["status"][0].upper(), ha="left",
                    color="#C44E52", fontsize="small")
        ax.set(title=f"{labels[name]}\n(drop >= {number(total_thr[name], 'points')})",
               xlabel="session",
               ylim=(2.7, 4.7), xticks=demo_sessions[::2])
    axes[0].set_ylabel("total alliance (invented)")
    fig.suptitle("Illustration with an invented series (not data)", fontsize="medium")
    fig.tight_layout()
    figures.inline(fig, "Illustration with an invented series, not data: one panel per "
                   "rupture rule, showing the same alliance series with the drops each rule "
                   "marks and, where found, the session of the repair.")
else:
    display(Markdown(
        "**No illustration:** no rule has a threshold for the total score in these data "
        "(see the table above), so there is no drop needed to draw the invented series "
        "with."))

# %% [markdown]
# ## What these data allow
#
# To see a drop, a client needs a rated session before it; to see a repair, at least one
# more afterwards. Clients with few rated sessions limit what can be found.

# %%
det = read("detectability")
if len(det):
    show(det[["rater", "sessions", "n_clients", "can_show"]].rename(
        columns={"sessions": "rated sessions", "n_clients": "clients",
                 "can_show": "what can be seen"}))
    client = det[det["rater"] == "client"].set_index("sessions")["n_clients"]
    if float(np.nan_to_num(client.get("3+", 0.0))) == 0:
        display(Markdown(
            "**No client has three or more rated sessions.** A repair, and therefore a V "
            "shape, cannot be seen at all in these data, nor a sudden dip (it needs a "
            "session after the low one); every drop found is censored, and "
            "each client's own variability cannot be estimated (only the sample's is used). "
            "The outcome comparison of repaired and unrepaired clients is not possible."))

# %% [markdown]
# ## How many episodes each rule finds, and why they disagree

# %%
prev = read("prevalence")
if len(prev):
    fig, drawn = plots.prevalence(prev)
    if (drawn["pct_clients"] > 0).any():
        figures.inline(fig, figures.describe("ruptures_prevalence"))
    else:  # an empty figure says nothing: say it in words
        plt.close(fig)
        found = pd.to_numeric(prev.loc[prev["rater"] == "client", "n_episodes"],
                              errors="coerce")
        display(Markdown(
            f"**{plots.NO_EPISODES}** under any rule or score, so there is no figure of "
            "how many clients had one (the table below shows the counts)."
            if found.eq(0).all() else
            "No share of clients with an episode can be shown: each is suppressed (fewer "
            f"than {min_cell} clients), so there is no figure."))
if len(prev):
    tab = prev[prev["rater"] == "client"][[
        "label", "scale", "n_series", "n_clients_with_episode", "pct_clients", "n_episodes",
        "n_repaired", "n_unrepaired", "n_censored", "pct_repaired", "median_length"]]
    show(tab, "mean_count",
         kinds={"pct_clients": "percent_table", "pct_repaired": "percent_table"},
         columns={"label": "rule", "n_series": "clients",
                  "n_clients_with_episode": "with an episode", "pct_clients": "%",
                  "n_episodes": "episodes", "n_repaired": "repaired",
                  "n_unrepaired": "unrepaired", "n_censored": "censored",
                  "pct_repaired": "% repaired*", "median_length": "median length"})
    display(Markdown(
        "\\* Repaired among episodes whose outcome is known (censored ones left out). A V "
        "shape is repaired by definition. Length = sessions from the drop to the repair. "
        f"'–': fewer than {min_cell} clients or episodes, or held back with such a cell so "
        "that it cannot be worked out from the others, here or in the tables below (a "
        "percentage with either of its counts)."))
    if (prev["rater"] == "therapist").any():
        display(Markdown("Therapist-rated series were analysed too; their rows are in "
                         "`results/ruptures/prevalence.csv` (rater = therapist)."))

# %%
agr = read("agreement")
if len(agr):
    tab = agr[(agr["rater"] == "client") & (agr["scale"] == "total")].copy()
    tab["criterion_a"] = tab["criterion_a"].map(labels)
    tab["criterion_b"] = tab["criterion_b"].map(labels)
    show(tab[["criterion_a", "criterion_b", "n_clients", "n_both", "n_only_a", "n_only_b",
              "kappa", "jaccard"]],
         kinds={"kappa": "proportion", "jaccard": "proportion"},
         columns={"criterion_a": "rule A", "criterion_b": "rule B", "n_clients": "clients",
                  "n_both": "both", "n_only_a": "only A", "n_only_b": "only B",
                  "kappa": "\u03ba", "jaccard": "Jaccard"})
    display(Markdown(
        "Agreement on the total score. *Both*, *only A*, *only B*: clients with at least "
        "one episode under both rules or under one of them. **\u03ba** (Cohen's kappa): do "
        "two rules agree on *which clients* had at least one episode, beyond chance (1 = "
        "always, 0 = no better than chance). "
        "**Jaccard**: of the rupture sessions found by either rule, the share found by both "
        f"('–' where, with the rules' episode counts, it would give back fewer than {min_cell} "
        "sessions found by both or by one rule only). "
        "Rules disagree because their thresholds differ (a stricter rule finds a subset of "
        "a laxer one's drops, plus none of the small ones), because the V shape also needs "
        "the return, and because the reliable-drop rule uses one yardstick for every client "
        "while the SD rules adapt to each client's own variability. "
        f"'–': fewer than {min_cell} clients, or held back with such a cell: with the "
        "clients each rule found (table above), one shown count of a row gives the others "
        "back, so a row with a blank is blank throughout, and \u03ba with it."))

# %% [markdown]
# ### When episodes start and how long they last

# %%
tim = read("timing")
if len(tim):
    t = tim[(tim["rater"] == "client") & (tim["scale"] == "total")].copy()
    t["rule"] = t["criterion"].map(labels)
    wide = t.set_index(["kind", "period", "rule"])["n_episodes"].unstack("rule")
    order = list(dict.fromkeys(zip(t["kind"], t["period"], strict=True)))
    wide = wide.reindex(order)[[labels[c] for c in criteria if labels[c] in wide.columns]]
    show(wide.reset_index().rename(columns={"kind": "by"}))
    display(Markdown(
        "Rupture sessions by session number and by third of each client's rated sessions "
        "(early, middle, late). Session 1 cannot start an episode. '–': fewer than "
        f"{min_cell} episodes, or held back with such a cell."))
lng = read("lengths")
if len(lng):
    t = lng[(lng["rater"] == "client") & (lng["scale"] == "total")].copy()
    t["rule"] = t["criterion"].map(labels)
    wide = t.set_index(["length", "rule"])["n_episodes"].unstack("rule")
    show(wide[[labels[c] for c in criteria if labels[c] in wide.columns]].reset_index())
    display(Markdown("Repaired episodes by length (sessions from the drop to the repair)."))
if not len(tim) and not len(lng):
    display(Markdown("No rupture episode was found under any rule, so no episode has a start "
                     "or a length to show."))

# %%
rec = read("recovery")
if len(rec):
    # a heading of its own only when there is a truth to compare with (simulated data)
    display(Markdown("### Do the rules find the episodes the simulation put in?"))
    t = rec.copy()
    t["rule"] = t["criterion"].map(labels)
    show(t[["rule", "n_observable", "n_detected", "n_matched", "recall", "precision",
            "status_agreement"]],
         kinds={"recall": "proportion", "precision": "proportion",
                "status_agreement": "proportion"},
         columns={"n_observable": "injected, observable", "n_detected": "found",
                  "n_matched": "found and injected", "status_agreement": "status agrees"})
    display(Markdown(
        "These data are simulated with known episodes (`truth.yaml`). *Recall*: share of "
        "injected episodes (whose rupture session and an earlier one were rated) that a "
        "rule found at the right session. *Precision*: share of a rule's episodes that were "
        "injected. *Status agrees*: of the injected episodes found, the share called "
        "repaired, unrepaired or censored as the simulation made them. Lax "
        "rules find most injected drops but also many drops of ordinary session-to-session "
        "noise; strict rules miss shallower drops. Precision also depends on how common "
        "ruptures are: in data with fewer real ruptures it is lower."))

# %% [markdown]
# ## How well can a rule find a rupture at all? A simulated test
#
# Whatever the data analysed, the step also runs every rule on simulated data built with
# this project's simulation settings, where the truth is known: every client has exactly
# one rupture, a drop of three (or six) times the usual session-to-session variability,
# lasting one session; and, as a control, data with no ruptures at all.

# %%
bench = read("detection_benchmark")
if len(bench):
    b = bench.copy()
    b["rule"] = b["criterion"].map(labels)
    names = {"deep_clear": "3-SD drops", "very_deep": "6-SD drops",
             "no_ruptures": "no ruptures"}
    b["scenario"] = b["scenario"].map(names).fillna(b["scenario"])
    wide = b.pivot_table(index="rule", columns="scenario",
                         values=["recall", "precision", "false_per_100"], sort=False)
    wide = wide.reindex([labels[c] for c in criteria if labels[c] in wide.index])
    cols = [(v, s) for s in ("3-SD drops", "6-SD drops") for v in ("recall", "precision")
            if (v, s) in wide.columns]
    cols += [("false_per_100", "no ruptures")] if ("false_per_100", "no ruptures") in wide \
        else []
    tab = wide[cols]
    tab.columns = [f"{v.replace('false_per_100', 'false per 100 sessions')}, {s}"
                   for v, s in cols]
    # recall and precision are proportions; false episodes per 100 sessions a mean count
    show(tab.reset_index(), kinds={name: "mean_count" if v == "false_per_100" else "proportion"
                                   for name, (v, _) in zip(tab.columns, cols, strict=True)})
    deep = b[b["scenario"] == "3-SD drops"].set_index("criterion")
    null = b[b["scenario"] == "no ruptures"].set_index("criterion")
    target = 0.8   # the project's target for recall and precision (tradeoff.py's default)
    good = [c for c in deep.index if deep.loc[c, "recall"] >= target
            and deep.loc[c, "precision"] >= target]
    low_recall = [c for c in deep.index if deep.loc[c, "recall"] < target]
    low_prec = [c for c in deep.index if deep.loc[c, "precision"] < target]
    # Why: the closed-form trade-off of a rule comparing a session with the mean of the
    # `pre_sessions` before it (pipeline/ruptures/tradeoff.py explains the arithmetic).
    from pipeline.ruptures.tradeoff import prior_mean_rule_tradeoff

    p_pre = int(rules["pre_sessions"])
    per_client = float(deep["n_sessions"].iloc[0] / deep["n_injected"].iloc[0])
    tr = prior_mean_rule_tradeoff(p_pre, per_client)
    bar, false_share, expected_prec = (tr.bar_for_recall, tr.false_share,
                                       tr.precision_at_recall)
    bar_p, recall_p = tr.bar_for_precision, tr.recall_at_precision
    between = [c for c, e in criteria.items() if e.get("kind") in ("sd", "v_shape")
               and "between" in e.get("sd", ["client", "between"]) and c in deep.index]
    between_text = (
        "Rules that also use the SD *between* clients ("
        + ", ".join(f"{esc(labels[c])}: recall {number(deep.loc[c, 'recall'], 'proportion')}"
                 for c in between)
        + ") set their bar partly in that SD, which is larger than the wobble within a "
        "client, so a multiple of it asks for a deeper drop than it seems. "
        if between else "")
    dips = [c for c, e in criteria.items() if e.get("kind") == "dip" and c in deep.index]
    dip_text = (
        f"A dip rule ({', '.join(esc(labels[c]) for c in dips)}) looks at the sessions "
        "on *both* sides of a low session, which separates a real one-session drop from a "
        "wobble better, and it measures the wobble with the dips left out, so that the "
        "ruptures do not raise the bar. It pays for this: it cannot see a drop at a "
        "client's last rated session, and a drop that lasts several sessions or is never "
        "repaired looks less like a dip." if dips else "")
    trade_off = (
        f"comparing a session with the mean of the {p_pre} before it, a bar that finds 80% "
        f"of 3-SD drops ({number(bar, 'bar')} within-client SDs) is also passed by "
        f"{percent(false_share)} of ordinary sessions; with {number(per_client, 'mean_count')} "
        "rated "
        f"sessions per client and one real drop, that is a precision of about "
        f"{number(expected_prec, 'proportion')}. Raising the bar until precision is "
        f"{number(target, 'proportion')} "
        f"({number(bar_p, 'bar')} SDs) brings recall down to about "
        f"{number(recall_p, 'proportion')}.")

    def names_of(keys: list[str]) -> str:
        return ", ".join(f"**{esc(labels.get(k, k))}**" for k in keys) or "none"

    def fig(c: str) -> str:
        return (f"{esc(labels.get(c, c))}: recall {number(deep.loc[c, 'recall'], 'proportion')}, "
                f"precision {number(deep.loc[c, 'precision'], 'proportion')}, "
                f"{number(null.loc[c, 'false_per_100'], 'mean_count')} false "
                "episodes per 100 sessions without ruptures")

    display(Markdown(
        "*Recall*: share of the simulated ruptures a rule finds at the right session. "
        "*Precision*: share of what a rule finds that is a simulated rupture. The target "
        f"set for this project is at least {number(target, 'proportion')} on both for 3-SD "
        f"drops. Reached by: {names_of(good)}. Recall below {number(target, 'proportion')}: "
        f"{names_of(low_recall)}; precision below {number(target, 'proportion')}: "
        f"{names_of(low_prec)}.\n\n"
        "**Why the published rules fall short, in plain words.** Ratings wobble from "
        "session to session. A rule that compares a session only with the one or two "
        "before it faces a choice: a low bar catches nearly every real drop but also many "
        "ordinary wobbles (low precision), a high bar ignores the wobbles but misses many "
        "real drops (low recall). A back-of-the-envelope calculation with normally "
        "distributed wobbles shows the squeeze: "
        f"{trade_off} "
        f"{between_text}"
        f"{dip_text}\n\n"
        + "\n".join(f"- {fig(c)}" for c in deep.index if c in null.index)))

# %% [markdown]
# ## The average course around an episode

# %%
with_outcome = has_outcome(params)
display(Markdown(
    (f"Alliance and {noun} of clients" if with_outcome else
     "The alliance of clients (alliance-only analysis: no outcome to draw)")
    + " around their rupture sessions, lined up so that 0 is\nthe session of the drop, and "
    "averaged over episodes (deviations from each client's own\nmean, with "
    f"{percent(float(params['model'].get('conf_level', 0.95)))} intervals). "
    "Offsets with fewer than `report.min_cell` episodes are not\ndrawn; *n* in the legend "
    "is the number of episodes.\nThis is an average over many clients, never one client's "
    "trajectory."))
crs = read("course")
fig_crit = str(cfg.get("figure_criterion"))
drawn = pd.DataFrame()
if len(crs):
    fig, drawn = plots.course(crs, fig_crit, labels.get(fig_crit, fig_crit),
                              with_outcome=with_outcome, outcome_label=label_noun)
    if drawn.empty:
        plt.close(fig)
if len(drawn):
    figures.inline(fig, figures.describe("ruptures_course", with_outcome, label_noun))
    display(Markdown(
        f"Rule: **{esc(labels.get(fig_crit, fig_crit))}** (`ruptures.figure_criterion`). "
        "The dip at 0 is partly built in: sessions were *selected* for being low. "
        + ((f"Whether {noun} rises as the alliance drops (higher = worse here) and falls "
            "back as it recovers is the informative part." if worse_up else
            f"Whether {noun} follows the alliance down and back up is the informative part.")
           if with_outcome else
           "How far and how fast the alliance comes back up is the informative part.")))
elif len(prev) and plots.episodes_found(prev, fig_crit) == 0:
    display(Markdown(
        f"No rupture episode was found under **{esc(labels.get(fig_crit, fig_crit))}** "
        "(`ruptures.figure_criterion`) on the total score, so there is no average course "
        "to draw."))
else:
    display(Markdown(
        "Too few repaired or unrepaired episodes to draw the average course (fewer than "
        f"{min_cell} at every session offset, or held back with a count the table of "
        "episodes does not show)."))

# %% [markdown] tags=["needs-outcome"]
# ## Ruptures and outcome
#
# Does the outcome change differently in clients whose ruptures were repaired, clients
# whose ruptures were not, and clients without a detected rupture? For each rule, a mixed
# model of each client's change in the outcome (last minus first rated session), adjusted
# for the first outcome score and the number of sessions in between, with a random
# intercept for the therapist. **This is observational**: nobody was assigned to repair.
# Clients who repair may differ in many ways (engagement, severity, their therapist), and
# a longer therapy both changes more and offers more chances to see an episode. A
# difference here is a description, not an effect of repair.

# %% tags=["needs-outcome"]
om = read("outcome_models")
oc = read("outcome_coefficients")
og = read("outcome_groups")
conf_text = (f"{percent(float(oc['conf_level'].iloc[0]))} CI"
             if len(oc) and "conf_level" in oc else "CI")
for _, m in om.iterrows():
    name = str(m["criterion"])
    head = f"**{esc(labels.get(name, name))}**: "
    if m["status"] not in ("fitted", "singular"):
        display(Markdown(head + f"{esc(m['status'])}: {esc(reason_words(m['reason']))}"))
        continue
    c = oc[(oc["criterion"] == name) & oc["term"].isin(["repaired", "unrepaired"])]
    parts = []
    for _, row in c.iterrows():
        parts.append(f"{esc(row['term'])} vs no rupture {format_num(row['estimate'])} "
                     f"points ({conf_text} [{format_num(row['conf_low'])}, "
                     f"{format_num(row['conf_high'])}])")
    flag = " (a variance is at its boundary)" if m["status"] == "singular" else ""
    simplified = m.get("simplification")
    note = (f" Simplified: {esc(str(simplified).rstrip('.'))}."
            if isinstance(simplified, str) and simplified else "")
    display(Markdown(head + "; ".join(parts) + f"; {counted(m['n_clients'], 'client')}, "
                     f"{counted(m['n_therapists'], 'therapist')}{flag}.{note}"))
if len(og):
    t = og.copy()
    t["rule"] = t["criterion"].map(labels)
    show(t[["rule", "group", "n_clients", "n_in_model", "mean_change", "sd_change"]],
         kinds={"mean_change": "points", "sd_change": "points"},
         columns={"n_clients": "clients", "n_in_model": "in the model",
                  "mean_change": "mean change", "sd_change": "SD"})
    display(Markdown(
        f"*Mean change*: last minus first rated {noun} score, unadjusted, of the clients in "
        "the model"
        + (" (higher = worse: a negative change is an improvement)" if worse_up else "")
        + "; censored clients (an episode whose repair could not yet be seen) are not in "
        f"the model. '–': no client, fewer than {min_cell}, or held back with a small "
        "group so that its count cannot be worked out from the others (a group's mean and "
        "SD go with its count)."))

# %% tags=["needs-outcome"]
rc = read("repair_correlation")
if len(rc):
    t = rc.copy()
    t["rule"] = t["criterion"].map(labels)
    level = percent(float(params["model"].get("conf_level", 0.95)))
    show(t[["rule", "n_clients", "r", "conf_low", "conf_high", "note"]],
         kinds={"r": "correlation", "conf_low": "correlation", "conf_high": "correlation"},
         columns={"n_clients": "clients with an episode", "conf_low": f"{level} CI low",
                  "conf_high": f"{level} CI high"})
    ref = rc.iloc[0]
    display(Markdown(
        "**Sanity check.** Among clients with an episode, the correlation of being repaired "
        f"with the (adjusted) {noun} change. A meta-analysis of 11 studies (Eubanks, Muran "
        f"& Safran, 2018) put the link between repair and outcome at about r = "
        f"{number(ref['reference_r'], 'correlation')}, with a wide interval (roughly "
        f"{number(ref['reference_low'], 'correlation')} to "
        f"{number(ref['reference_high'], 'correlation')}); these figures are approximate. "
        + ("Here the outcome is higher = worse, so a link of that size shows as a "
           "*negative* r of about that size. " if worse_up else "")
        + "A value far "
        "outside that range is not wrong by itself, but it asks whether the rule detects "
        "real ruptures (see precision above) before anything is read into it."))

# %% [markdown]
# ## How therapy ended
#
# A weaker alliance is known to go with clients leaving therapy early (Sharf, Primavera &
# Diener, 2010). When the clients file says how each therapy ended (`ending`: planned,
# unplanned, ongoing), a discrete-time survival model (Singer & Willett, 2003) asks,
# session by session: is a
# client more likely to end unplanned right after a session whose alliance was lower than
# their own earlier sessions (within), and are clients with a lower alliance in general
# (between) more likely to? Planned endings and clients still in therapy count as
# "not (yet) ended unplanned" (censored).

# %%
em = read("endings_model")
ec = read("endings_coefficients")
cnt = read("endings_counts")
if len(cnt):
    show(cnt[["ending", "n_clients"]].rename(columns={"n_clients": "clients"}))
m = em.iloc[0] if len(em) else None
if m is not None and m["status"] == "fitted" and len(ec):
    t = ec[ec["term"] != "Intercept"][["term", "odds_ratio", "or_low", "or_high", "p_value"]]
    t = t.assign(term=t["term"].map(term_label))
    or_level = percent(float(ec["conf_level"].iloc[0]) if "conf_level" in ec else 0.95)
    show(t, kinds={"odds_ratio": "odds_ratio", "or_low": "odds_ratio",
                   "or_high": "odds_ratio"}, p_values=("p_value",),
         columns={"odds_ratio": "odds ratio per point", "or_low": f"{or_level} CI low",
                  "or_high": f"{or_level} CI high", "p_value": "p"})
    w = ec.set_index("term")
    lines = []
    for term, what in (("alliance_within", "a session rated 0.1 points lower than the "
                        "client's own earlier sessions"),
                       ("alliance_between", "a client whose earlier sessions were rated 0.1 "
                        "points lower on average than other clients'")):
        if term in w.index:
            ratio = float(np.exp(-0.1 * w.loc[term, "estimate"]))
            lines.append(f"- {what}: odds of ending unplanned after the session multiplied "
                         f"by {number(ratio, 'odds_ratio')}")
    display(Markdown(
        "*Odds ratio per point*: how the odds of ending unplanned after a session change "
        "for one point more of alliance (below 1: a higher alliance goes with fewer "
        "unplanned endings); *time* is session \u2212 1.\n\n"
        + events_in_model(int(m["n_events"]), int(m["n_events_in_model"]), min_cell)
        + f" The model covers {counted(m['n_clients'], 'client')} "
        f"({int(m['n_in_model']):,} client-sessions from each client's second rated "
        f"session on). Standard errors allow for clients sharing a therapist "
        "(cluster-robust).\n\nIn words:\n\n" + "\n".join(lines)))
elif m is not None:
    display(Markdown(f"**Unplanned ending model: {esc(m['status'])}.** "
                     f"{esc(reason_words(m['reason']))}."))
last = read("last_session")
if m is not None and m["status"] != "fitted" and len(last):
    row = last.iloc[0]
    if isinstance(row.get("note"), str) and row["note"]:
        display(Markdown(
            "What the last rated session alone can say: nothing here. Among clients with "
            f"three or more rated sessions, {esc(row['note'])}."))
    elif pd.notna(row["mean_difference"]):
        display(Markdown(
            "What the last rated session alone can say: among clients with three or more "
            f"rated sessions ({int(row['n_clients'])}), the alliance at the last session "
            f"was {number(row['mean_difference'], 'points', signed=True)} points from their "
            f"other sessions' mean ({percent(float(params['model'].get('conf_level', 0.95)))} "
            f"CI {number(row['conf_low'], 'points')} to "
            f"{number(row['conf_high'], 'points')}); "
            f"{percent(row['share_lower'], scaled=True)} rated it lower. "
            # with an ending column the endings are known; only the model could not be fitted
            + ("This comparison alone cannot separate an unplanned ending from a planned one."
               if len(cnt) else "Without knowing how therapy ended, this cannot separate an "
               "unplanned ending from a planned one.")))
    else:
        display(Markdown(
            f"Fewer than {min_cell} clients have three or more rated sessions, so not even "
            "the last rated session can be compared with a client's usual level."))

# %% [markdown]
# ## Limits
#
# - **Post-session ratings are indicators.** A drop may be a rupture, a bad week, or a
#   careless answer; a rupture that the client does not report, or reports only later,
#   leaves no trace. How often a post-session drop matches a rupture that observers
#   would code in the session recording is not known from these data.
# - **The rules are conventions.** Gumz et al. (2012) showed how strongly the count depends
#   on the rule; this report shows several for that reason.
# - **Ceiling.** Where alliance ratings crowd near the top of the scale (the overview and
#   psychometrics reports say how far they do in these data), a client has little room
#   to show a further rise, and a repair "back to the earlier level" may be hard to
#   distinguish from noise.
# - **Observational links.** The outcome and ending models describe associations; they do
#   not show that repairing a rupture causes better outcomes or keeps clients in therapy.

# %%
# The works this report cites (docs/references.yaml).
display(Markdown(reference_list([
    "gumz_2012", "stiles_2004", "tang_derubeis_1999", "jacobson_truax_1991",
    "eubanks_2018", "sharf_2010", "singer_willett_2003"])))
