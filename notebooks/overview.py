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
# working alliance and wellbeing moved over the sessions. It shows aggregates only: no
# individual client appears, and any group of fewer clients than the threshold set in
# `params.yaml` (`report.min_cell`) is suppressed.
#
# The **working alliance** (Bordin, 1979) is the collaboration between client and
# therapist. It has three parts, each scored here from the client's questionnaire:
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
from pipeline.report import data_notice, open_project
from pipeline.tables import styled

root, params = open_project(params_file)
results = root / "results"
min_cell = int(params["report"]["min_cell"])
figures.apply_style()

# %%
display(Markdown(data_notice(params)))
display(Markdown(
    f"Alliance measure: **`{params['instruments']['alliance']}`**; "
    f"outcome measure: **`{params['instruments']['outcome']}`**."
))

# %% [markdown]
# ## What went in
#
# The counts below follow the data from the input files to the models. A client × session
# enters the models only when both questionnaires were returned and every score could be
# computed (see the scoring rules in `pipeline/instruments/`).

# %%
counts = pd.read_csv(results / "describe" / "data_counts.csv")
styled(counts).format({"count": "{:,.0f}"})

# %% [markdown]
# ## Checks the data passed
#
# Before anything is scored, every input file is checked against the input contract
# (`data/README.md`) and an anonymisation guard that refuses names, e-mail addresses,
# phone numbers, dates, health-record numbers and free text. A failed check stops the
# pipeline, so a report only exists for data that passed. Warnings (counted, never
# silently dropped) are listed here.

# %%
checks = pd.read_csv(results / "describe" / "checks.csv")
summary = checks.groupby(["file", "status"]).size().unstack(fill_value=0)
display(summary)
warn = checks[checks["status"] == "warning"]
if len(warn):
    display(styled(warn[["file", "check", "n", "detail"]]))
else:
    display(Markdown("No warnings."))

# %% [markdown]
# ### How many clients share each combination of client characteristics
#
# A rare combination (say, the only client seen by video in one approach) could point to a
# person even without a name. Combinations shared by fewer than `min_cell` clients are
# shown as "< min_cell"; the validation step warns about them.

# %%
k_file = results / "describe" / "k_anonymity.csv"
if k_file.is_file():
    k_table = pd.read_csv(k_file).drop(columns="suppressed")
    display(styled(k_table).format(
        {"n_clients": lambda v: f"< {min_cell}" if pd.isna(v) else f"{v:,.0f}"}))
else:
    display(Markdown("No clients file: no client characteristics to combine."))

# %% [markdown]
# ## How many sessions clients attended
#
# Real therapies vary in length and clients miss sessions; the models use every session a
# client has, so nobody is dropped for missing some. Bars for fewer than `min_cell`
# clients are suppressed.

# %%
att = pd.read_csv(results / "describe" / "attendance.csv")
fig, ax = plt.subplots(figsize=(7, 3.2))
shown = att[~att["suppressed"]]
ax.bar(shown["sessions"], shown["clients"], color="#4C72B0")
ax.set_xlabel("complete sessions per client")
ax.set_ylabel("clients")
ax.set_title("Sessions per client")
plt.show()
n_supp = int(att["suppressed"].sum())
if n_supp:
    display(Markdown(f"{n_supp} bar(s) with fewer than {min_cell} clients suppressed."))

# %% [markdown]
# ## Alliance and wellbeing over the sessions
#
# Means at each session with 95% intervals. The alliance subscales are on the item-mean
# metric of the questionnaire (1 = lowest, 5 = highest on the WAI-SR); wellbeing is on the
# outcome measure's own metric. Later sessions are attended by fewer clients (and by the
# ones who stayed), so their means are less certain and may not describe the same people
# as early sessions. The same figure, with the numbers behind it, is in
# `reports/figures/trajectories.{png,svg,csv}`.

# %%
fig, _ = figures.trajectories(pd.read_csv(results / "describe" / "trajectories.csv"))
plt.show()

# %% [markdown]
# ## How the scores are distributed
#
# Every session's scores, in bins. Alliance ratings crowd towards the top of the scale
# (a *ceiling*): most clients rate the alliance well, so differences among high ratings
# are hard to see. Bins with fewer than `min_cell` sessions are suppressed.

# %%
fig, _ = figures.distributions(pd.read_csv(results / "describe" / "distributions.csv"))
plt.show()

# %%
# The works this report cites (docs/references.yaml; the questionnaires used, too).
from IPython.display import Markdown, display

from pipeline.references import instrument_keys, reference_list

display(Markdown(reference_list(["bordin_1979", *instrument_keys(params)])))
