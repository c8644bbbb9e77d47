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
# # Do goal, task and bond predict wellbeing?
#
# **In short.** This report fits the pre-registered primary model of the analysis plan
# (`shared/reference/analysis-plan.md`): wellbeing at each session is predicted from the
# client's goal, task and bond scores, split into a *within-client* part (is a client
# better off in sessions where their alliance is higher than usual for them?) and a
# *between-client* part (are clients with a stronger alliance on average better off?).
# Then come the secondary models. Every number is read from `results/`, where the
# pipeline's `fit` step wrote it.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.config import find_project_root, load_params
from pipeline.tables import styled

root = find_project_root() if params_file is None else Path(params_file).resolve().parent
params = load_params(root / "params.yaml" if params_file is None else params_file)
results = root / "results"
figures.apply_style()
if params["data"].get("simulated", False):
    display(Markdown(
        "> **These data are SIMULATED** (`pipeline/simulate.py`, true values in "
        "`data/simulated/truth.yaml`). No finding here is about real clients."
    ))
coefs = pd.read_csv(results / "coefficients.csv")
stats = pd.read_csv(results / "fit_statistics.csv")
varcomp = pd.read_csv(results / "variance_components.csv")

# %% [markdown]
# ## Within and between: two different questions
#
# Each client answers the alliance questionnaire at many sessions. Their scores differ in
# two ways, and the model keeps the two apart (Curran & Bauer, 2011):
#
# - **between clients**: some clients rate the alliance higher *on average* than others.
#   `goal_between` is a client's mean goal score minus the mean over clients. Its
#   coefficient compares *different people*, so anything that differs between people
#   (how ill they are, what they expect of therapy) can stand behind it.
# - **within a client**: a client's score also moves from session to session around their
#   own mean. `goal_within` is the session's score minus the client's own mean. Its
#   coefficient asks whether *the same person* feels better in sessions where the
#   alliance is stronger than usual for them; stable differences between people cannot
#   explain it.
#
# Each coefficient is the expected change in wellbeing for one point more on the
# subscale (on its 1–5 item-mean metric), holding the other subscales and time constant.
#
# The model also lets clients and therapists differ: a random intercept for each
# therapist, one for each client, and a random slope on time for each client
# (wellbeing changes at different speeds). `time` = session − 1.

# %%
primary = coefs[coefs["model"] == "primary"].copy()
pstats = stats[stats["model"] == "primary"].iloc[0]
converged = bool(pstats["converged"])
display(Markdown(
    f"**Primary model** fitted by {'REML' if pstats['reml'] else 'ML'} on "
    f"{int(pstats['n_obs']):,} sessions of {int(pstats['n_clients']):,} clients and "
    f"{int(pstats['n_therapists']):,} therapists. Optimizer: `{pstats['optimizer']}`; "
    + ("converged (gradient checked)." if converged else
       "**DID NOT CONVERGE: do not use these numbers.**")
))
df_method = primary["df_method"].iloc[0]
table = primary[["term", "estimate", "std_error", "conf_low", "conf_high", "p_value"]]
display(Markdown(f"p-values: {df_method}."))
styled(table).format(
    {"estimate": "{:.3f}", "std_error": "{:.3f}", "conf_low": "{:.3f}", "conf_high": "{:.3f}",
     "p_value": lambda p: "< .001" if p < 0.001 else f"{p:.3f}"}
)

# %% [markdown]
# ## Within- versus between-client effects
#
# The plot sets each subscale's within-client effect beside its between-client effect,
# with 95% intervals. An interval that does not cross zero is a clear effect at the 5% level.

# %%
fig, _ = figures.coefficient_plot(coefs)
plt.show()

# %% [markdown]
# ## What the effects mean in wellbeing points
#
# The lines show how much higher the model predicts wellbeing to be for a session whose
# alliance is *x* points above the client's usual level (within), or for a client whose
# average alliance is *x* points above the average client (between), with everything else
# held constant. The bands are 95% intervals.

# %%
fig, _ = figures.predicted_wellbeing(coefs)
plt.show()

# %% [markdown]
# ## How much varies between therapists, clients and sessions
#
# Variance components of the primary model (standard deviations on the wellbeing metric).

# %%
vc = varcomp[varcomp["model"] == "primary"][["component", "variance", "sd"]]
styled(vc).format({"variance": "{:.3f}", "sd": "{:.3f}"})

# %% [markdown]
# ## All models
#
# Fit statistics of every model the pipeline fitted (`pipeline/models.yaml` documents each
# one). A model that did not converge is marked and its numbers should not be used.

# %%
cols = [c for c in ["model", "n_obs", "reml", "loglik", "aic", "bic", "r2_marginal",
                    "r2_conditional", "optimizer", "converged"] if c in stats.columns]
styled(stats[cols]).format(precision=3)

# %%
other = coefs[coefs["model"] != "primary"]
cols = [c for c in ["model", "term", "estimate", "std_error", "conf_low", "conf_high",
                    "p_value", "p_holm"] if c in other.columns]
styled(other[cols]).format(precision=3)
