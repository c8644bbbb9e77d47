"""Simulation from a model: study designs, alliance processes and model-based outcomes.

``design``  -- the session skeleton of a study design (therapists, clients per
               therapist, planned sessions, attendance and form return), balanced for
               planning or a naturalistic caseload (the shipped data);
``covariates`` -- client covariates of the clients file (approach, modality);
``alliance`` -- goal, task and bond at therapist, client and session level, as scores or
               down to item level through the instrument registry (then scored by the
               project's own scoring);
``outcome`` -- the outcome generated from a mixed model's fixed effects and variance
               components, conditional on the predictors the project's own design
               building computes from the simulated alliance;
``items``   -- blank items, and outcome items from a score through the instrument's own
               scoring (conversion table, direction);
``ruptures`` -- injected rupture-repair episodes (the truth of the ruptures analyses);
``endings`` -- unplanned endings driven by the alliance, and data-collection cut-offs;
``study``   -- one planning study (power, bootstrap coverage);
``dataset`` -- the shipped SIMULATED data set and its ``truth.yaml``
               (``python -m pipeline simulate``).

The shipped data set, power analysis and the parametric bootstrap simulate through here,
so that simulated data pass through the same scoring and predictor construction as real
data.
"""
