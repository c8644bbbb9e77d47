"""Simulation-based power for the models of the analysis plan.

``settings`` -- the ``power:`` block of params.yaml, checked before anything runs;
``truth``    -- the true values: ``power.effects`` over the fitted model's estimates;
``replicate`` -- one replicate: simulate a study of a design, fit the model, keep the
                test of each term (a module-level function, so it runs on Dask workers);
``summary``  -- power per design and term with Monte-Carlo intervals, failed fits
                counted, and the smallest design reaching the target.

R equivalent: ``simr::powerSim`` / ``powerCurve`` (Green & MacLeod 2016), with failed
fits counted instead of silently read as non-rejections.
"""
