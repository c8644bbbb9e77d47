"""Simulation from a model: study designs, alliance processes and model-based outcomes.

``design``  -- the session skeleton of a study design (therapists, clients per
               therapist, planned sessions, attendance and form return);
``alliance`` -- goal, task and bond at therapist, client and session level, as scores or
               down to item level through the instrument registry (then scored by the
               project's own scoring);
``outcome`` -- the outcome generated from a mixed model's fixed effects and variance
               components, conditional on the predictors the project's own design
               building computes from the simulated alliance.

Power analysis and the parametric bootstrap simulate through here, so that simulated data
pass through the same scoring and predictor construction as real data.
"""
