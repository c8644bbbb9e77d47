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
# # Data overview: who and what went into the analysis
#
# **In short.** This report counts the therapists, clients and sessions that went into the
# analysis, shows how many sessions clients attended, and how the three parts of the
# working alliance (and the outcome, when there is one) moved over the sessions. It shows
# aggregates only: no individual client appears, and any group of fewer clients than the
# threshold set in `params.yaml` (`report.min_cell`) is suppressed. Where the other numbers
# and a total shown elsewhere would give a suppressed number back by subtraction, more
# numbers are held back with it (*secondary suppression*): at least two, adding up to at
# least that threshold.
#
# The **working alliance** (Bordin, 1979) is the collaboration between client and
# therapist. It has three parts:
#
# - **goal**: how far client and therapist agree on what therapy is for;
# - **task**: how far they agree on what they do in sessions to get there;
# - **bond**: the emotional connection between them: trust, liking, respect.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.instruments import load_instrument
from pipeline.report import (
    alliance_metric,
    data_notice,
    escape,
    open_project,
    outcome_description,
    top_share,
)
from pipeline.report import outcome_label as report_outcome_label
from pipeline.score import therapist_form
from pipeline.tables import format_int, number, percent, styled

root, params = open_project(params_file)
results = root / "results"
describe = results / "describe"
min_cell = int(params["report"]["min_cell"])
conf = float(params["model"].get("conf_level", 0.95))
figures.apply_style()
cfg = params["instruments"]
paths = cfg.get("paths") or []
alliance = load_instrument(cfg["alliance"], paths)
therapist = therapist_form(cfg)
has_outcome = bool(params["data"].get("outcome")) and bool(cfg.get("outcome"))
outcome = load_instrument(cfg["outcome"], paths) if has_outcome else None
outcome_label = outcome.name if outcome is not None else "outcome"
outcome_word = report_outcome_label(params, escaped=False)   # wellbeing, depression, ...


def count(v: float) -> str:
    """A count as shown: blank counts were suppressed (or do not apply)."""
    return "–" if pd.isna(v) else format_int(v)


def points(v: float) -> str:
    """Score points (means, SDs, bounds) at the style's decimals; '–' when suppressed."""
    return "–" if pd.isna(v) else number(v, "points")


def difference(v: float) -> str:
    """A difference of score points with its sign (+0.12, −0.05); '–' when suppressed."""
    return "–" if pd.isna(v) else number(v, "points", signed=True)


def correlation(v: float) -> str:
    """A correlation at the style's decimals, as the table printed it (0.45); '–' when
    suppressed."""
    return "–" if pd.isna(v) else number(v, "correlation")


# %%
display(Markdown(data_notice(params)))
display(Markdown(
    f"Alliance measure: **{escape(alliance.name)}** (<code>{escape(alliance.key)}</code>), "
    f"scored as {alliance_metric(alliance)}."
    + (f" Therapist ratings: **{escape(therapist.name)}** "
       f"(<code>{escape(therapist.key)}</code>)." if therapist is not None else "")
    + " " + outcome_description(outcome, bool(cfg.get("outcome_higher_is_better", True)))
))

# %% [markdown]
# ## What went in
#
# The counts below follow the data from the input files to the models. A client × session
# enters the models only when every score it needs could be computed (see the scoring
# rules in `pipeline/instruments/`). Counts below `report.min_cell` are not shown.

# %%
counts = pd.read_csv(describe / "data_counts.csv", keep_default_na=False,
                     na_values=[""]).fillna({"note": ""})
styled(counts).format({"count": count})

# %% [markdown]
# ## Checks the data passed
#
# Before anything is scored, every input file is checked against the input contract
# (`data/README.md`) and an anonymisation guard that refuses names, e-mail addresses,
# phone numbers, dates, health-record numbers and free text. A failed check stops the
# pipeline, so a report only exists for data that passed. Warnings (counted, never
# silently dropped) are listed here; counts below `report.min_cell` are not shown.

# %%
checks = pd.read_csv(describe / "checks.csv")
summary = checks.groupby(["file", "status"]).size().unstack(fill_value=0).reset_index()
display(styled(summary.rename(columns={"info": "notes", "pass": "passed",
                                       "warn": "warnings"})))
display(Markdown("Number of checks per file: passed, warnings (listed below) and notes "
                 "(information only, e.g. the number of rows read)."))
warn = checks[checks["status"] == "warn"]
if len(warn):
    # The check's key (e.g. no_outcome_rows) is for the log; the reader gets its detail.
    display(styled(warn[["file", "detail", "n"]].rename(
        columns={"detail": "warning", "n": "count"})).format({"count": count}))
else:
    display(Markdown("No warnings."))

# %% [markdown]
# ### How many clients share each combination of client characteristics
#
# A rare combination (say, the only client seen by video in one approach) could point to a
# person even without a name. Combinations shared by fewer than `report.min_cell` clients
# are pooled into one row, "(rare)", without their values. The rows add up to the clients
# in the clients file (above), so when the "(rare)" count is not shown, the count of the
# smallest combination (or more) is not shown either: otherwise the rare count would be the
# total minus the others.

# %%
k_file = describe / "k_anonymity.csv"
if k_file.is_file():
    k_table = pd.read_csv(k_file, dtype=str, keep_default_na=False)
    k_table = k_table.drop(columns=[c for c in ("suppressed",) if c in k_table.columns])
    for column in ("n_clients", "n_combinations"):
        if column in k_table.columns:
            k_table[column] = pd.to_numeric(k_table[column], errors="coerce")
    k_table = k_table.rename(columns={"n_clients": "clients",
                                      "n_combinations": "combinations"})
    rare = (k_table.drop(columns=["clients", "combinations"]) == "(rare)").all(axis=1)
    # The rare row's blank is below min_cell (it says so); a combination's blank is a
    # count of min_cell or more held back with it (secondary suppression).
    k_table["clients"] = [f"< {min_cell}" if pd.isna(v) and r else count(v)
                          for v, r in zip(k_table["clients"], rare, strict=True)]
    display(styled(k_table).format({"combinations": count}))
    held = int((k_table["clients"] == "–").sum())
    if held:
        display(Markdown(
            f"{held} combination count(s) shown as – are not given so that the \"(rare)\" "
            "count cannot be worked out from the number of clients."))
else:
    display(Markdown("No client characteristics were tabulated (no clients file, no "
                     "covariates, or only numeric covariates with many values)."))

# %% [markdown]
# ## How many sessions clients attended
#
# Real therapies vary in length and clients miss sessions; the models use every session a
# client has, so nobody is dropped for missing some. Bars for fewer than `report.min_cell`
# clients are suppressed. The bars add up to the clients in the models (above), so when a
# bar is suppressed, the smallest other bars are left out too, until at least two are left
# out and they hold at least `report.min_cell` clients together: no bar can be worked out
# by subtraction.

# %%
att = pd.read_csv(describe / "attendance.csv")
shown = att[~att["suppressed"]]
if len(shown):
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(shown["sessions"], shown["clients"], color="#4C72B0")
    ax.set_xlabel("complete sessions per client")
    figures.integer_axis(ax)
    ax.set_ylabel("clients")
    ax.set_title("Sessions per client")
    figures.inline(fig, "Bar chart of the number of clients by their number of complete "
                   "sessions; groups smaller than the minimum cell size, and bars left out "
                   "with them, are not drawn.")
n_supp = int(att["suppressed"].sum())
if n_supp == 1:
    display(Markdown(f"1 bar not drawn: it has fewer than {min_cell} clients."))
elif n_supp:
    # Which of the left-out bars are the small ones is not said: with the number of
    # clients it could give them back.
    display(Markdown(
        f"{n_supp} bars not drawn: each has fewer than {min_cell} clients or was left out "
        "with such a bar, so that no left-out bar can be worked out from the number of "
        "clients."))

# %% [markdown]
# ## The alliance (and the outcome) over the sessions

# %%
traj = pd.read_csv(describe / "trajectories.csv")
display(Markdown(
    f"Means at each session with {percent(conf)} intervals. The alliance subscales are on the "
    f"{alliance_metric(alliance)}"
    + (f"; the outcome is on the {escape(outcome.name)}'s own metric." if outcome is not None
       else "; there is no outcome file, so only the alliance is shown.")
    + " Later sessions are attended by fewer clients (and by the ones who stayed), so their "
    "means are less certain and may not describe the same people as early sessions. "
    "Sessions with fewer than the minimum number of clients are not drawn."
))
if (~traj["suppressed"]).any():
    metric = f"{alliance.item_min:g}\u2013{alliance.item_max:g}"
    figures.show(*figures.trajectories(traj, outcome_label=outcome_label,
                                       alliance_metric=metric), "trajectories",
                 with_outcome=has_outcome, outcome=outcome_word)
else:
    display(Markdown(f"Every session has fewer than {min_cell} clients: nothing to show."))

# %% [markdown]
# ## How the scores are distributed
#
# Every session's scores, in bins. Bins with fewer than `report.min_cell` sessions are
# suppressed; a score's bins add up to its number of sessions, so the smallest other bins
# of that score are left out with them until at least two are left out, holding at least
# `report.min_cell` sessions together.

# %%
dist = pd.read_csv(describe / "distributions.csv")
if (~dist["suppressed"].astype(bool)).any():
    figures.show(*figures.distributions(dist, outcome_label=outcome_label), "distributions",
                 with_outcome=has_outcome, outcome=outcome_word)
ceiling = params["report"].get("ceiling", {}) or {}
top_fraction = float(ceiling.get("top_fraction", 0.25))
min_share = float(ceiling.get("min_share", 0.5))
share = top_share(dist, alliance.item_min, alliance.item_max, top_fraction)
cut = alliance.item_max - top_fraction * (alliance.item_max - alliance.item_min)
if pd.isna(share):
    display(Markdown("Too few sessions to describe the distribution."))
else:
    text = (f"{percent(share)} of the goal, task and bond scores shown lie in the top "
            f"{percent(top_fraction)} of the scale ({cut:g} or more on "
            f"{alliance.item_min:g}\u2013{alliance.item_max:g}).")
    rule = (f"(the report's rule, `report.ceiling.min_share`: more than {percent(min_share)} "
            "of the scores there)")
    if share > min_share:
        text += (" The subscale scores crowd towards the top of the scale (a *ceiling*) "
                 f"{rule}: differences among high ratings are hard to see.")
    else:
        text += (f" The subscale scores as a whole do not crowd at the top {rule}. Single "
                 "items can still have a ceiling: the psychometrics report counts the "
                 "answers at each item's best score.")
    display(Markdown(text))

# %% [markdown]
# ## Client and therapist ratings
#
# When both the client and the therapist rated the alliance of the same session, the
# models use the client's rating (as the analysis plan says); the therapist's is described
# here. Therapists usually rate the alliance somewhat lower than clients, and the two
# ratings correlate only moderately (Tryon et al., 2007). *Difference* is client minus
# therapist; groups with fewer than `report.min_cell` pairs are suppressed.

# %%
rater_file, agreement_file = describe / "rater_summary.csv", describe / "rater_agreement.csv"
raters = (pd.read_csv(rater_file) if rater_file.is_file()
          else pd.DataFrame(columns=["rater", "suppressed"]))
agreement = pd.read_csv(agreement_file) if agreement_file.is_file() else pd.DataFrame()
#: The total score's column name shown as a reader's word ("total", as the other reports).
scale_words = {"scale": {"alliance_total": "total"}}
if (raters["rater"] == "therapist").any():
    raters = raters.replace(scale_words)
    agreement = agreement.replace(scale_words) if len(agreement) else agreement
    display(styled(raters.drop(columns="suppressed").rename(
        columns={"n_forms": "forms", "n_clients": "clients", "sd": "SD"})).format(
        {"forms": count, "clients": count, "mean": points, "SD": points},
        na_rep="–"))
    if len(agreement):
        cols = ["scale", "session", "n_pairs", "r", "mean_client", "mean_therapist",
                "mean_difference", "conf_low", "conf_high", "note"]
        ci = f"{percent(conf)} CI"
        display(styled(agreement[cols].fillna({"note": ""}).rename(columns={
            "n_pairs": "pairs", "mean_client": "client mean",
            "mean_therapist": "therapist mean", "mean_difference": "difference",
            "conf_low": f"{ci} low", "conf_high": f"{ci} high"})).format(
            {"pairs": count, "r": correlation, "client mean": points,
             "therapist mean": points, "difference": difference, f"{ci} low": points,
             f"{ci} high": points}, na_rep="–"))
        display(Markdown(
            f"Interval: {percent(conf)} paired-t interval of the mean difference. The pooled row "
            "('all') treats a client's sessions as independent pairs: a description, not a "
            "test."))
    else:
        display(Markdown("No session was rated by both: agreement cannot be computed."))
else:
    display(Markdown("Only client ratings were given."))

# %%
# The works this report cites (docs/references.yaml; the questionnaires used, too).
from IPython.display import Markdown, display

from pipeline.references import instrument_keys, reference_list

display(Markdown(reference_list(["bordin_1979", "tryon_2007", *instrument_keys(params)])))
