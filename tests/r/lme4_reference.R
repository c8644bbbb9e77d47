# lme4 reference values for tests/test_model.py.
#
# Usage (from the project root; tests/fixtures/lme4/make_fixtures.py runs it):
#   Rscript tests/r/lme4_reference.R tests/fixtures/lme4
#
# For every tests/fixtures/lme4/data_<name>.csv (scored rows written by the simulator) this
# script computes the model variables itself (time = session - 1; Curran & Bauer person-mean
# disaggregation: k_between = client mean - mean of client means, k_within = k - client mean;
# total = mean of goal, task, bond), fits the models below in lme4 and writes
#   lme4_fixed.csv    dataset, model, term, estimate, std_error, df, p_value
#                     (df and p: lmerTest's Satterthwaite method, summary(fit))
#   lme4_varcomp.csv  dataset, model, component, variance
#   lme4_fit.csv      dataset, model, reml, n_obs, loglik, optimizer, singular,
#                     r2_marginal, r2_conditional
#   lme4_refusals.csv dataset, model, formula, message: lme4's own refusal of the full
#                     random part on the degenerate data sets (one therapist; at most
#                     two sessions per client), where the fixtures hold lme4's fit of the
#                     simplified random part our checks choose (see `random_for` below)
#   lme4_unchecked.csv dataset, model, loglik, therapist variance, intercept SE of the
#                     full random part with lme4's checks switched off
#   lme4_session.txt  R, lme4 and lmerTest versions
# Each model is fitted with three optimizers (bobyqa, Nelder_Mead, nloptwrap) with tight
# tolerances and the best REML/ML criterion is kept, so the reference is the optimum.
# R2 follows Nakagawa & Schielzeth (2013) with Johnson's (2014) random-slope term,
# written out here (MuMIn is not needed).

suppressPackageStartupMessages({library(lme4); library(lmerTest)})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else file.path("tests", "fixtures", "lme4")

prepare <- function(d) {
  d <- d[order(d$therapist_id, d$client_id, d$session), ]
  d$time <- d$session - 1
  d$total <- (d$goal + d$task + d$bond) / 3
  for (k in c("goal", "task", "bond", "total")) {
    client_means <- tapply(d[[k]], d$client_id, mean)
    cm <- as.numeric(client_means[as.character(d$client_id)])
    d[[paste0(k, "_between")]] <- cm - mean(client_means)
    d[[paste0(k, "_within")]] <- d[[k]] - cm
  }
  d
}

random3 <- "(1 | therapist_id) + (1 | client_id) + (0 + time | client_id)"
random2 <- "(1 | therapist_id) + (1 | client_id)"
randomc <- "(1 | therapist_id) + (1 + time | client_id)"
models <- list(
  primary = list(fixed = paste("wellbeing ~ time + goal_within + task_within + bond_within",
                               "+ goal_between + task_between + bond_between"),
                 random = random3, reml = TRUE),
  growth = list(fixed = "wellbeing ~ time", random = random3, reml = TRUE),
  total_alliance = list(fixed = "wellbeing ~ time + total_within + total_between",
                        random = random3, reml = TRUE),
  alliance_levels_goal = list(fixed = "goal ~ 1", random = random2, reml = TRUE),
  sens_ml = list(fixed = paste("wellbeing ~ time + goal_within + task_within + bond_within",
                               "+ goal_between + task_between + bond_between"),
                 random = random3, reml = FALSE),
  sens_correlated = list(fixed = paste("wellbeing ~ time + goal_within + task_within",
                                       "+ bond_within + goal_between + task_between",
                                       "+ bond_between"),
                         random = randomc, reml = TRUE)
)

# The random part our pre-fit checks (pipeline/models/checks.py) fit on the degenerate
# data sets: one therapist -> therapist level dropped; at most two sessions per client ->
# client slope dropped.
random_for <- function(dataset, random) {
  if (dataset == "one_therapist") {
    return(trimws(sub("\\(1 \\| therapist_id\\) \\+", "", random)))
  }
  if (dataset == "two_sessions") {
    random <- sub("\\(1 \\+ time \\| client_id\\)", "(1 | client_id)", random)
    return(sub(" \\+ \\(0 \\+ time \\| client_id\\)", "", random))
  }
  random
}
degenerate <- c("one_therapist", "two_sessions")

controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa",
                       optCtrl = list(maxfun = 1e5, rhoend = 1e-10)),
  Nelder_Mead = lmerControl(optimizer = "Nelder_Mead",
                            optCtrl = list(maxfun = 1e5, FtolAbs = 1e-12, XtolRel = 1e-10)),
  nloptwrap = lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(maxeval = 1e5, xtol_abs = 1e-12, ftol_abs = 1e-12))
)

# The criterion each fit minimised: REMLcrit for REML fits. (Not deviance(fit, REML =
# TRUE): lme4's deviance.merMod ignores a non-NULL REML and returns the ML deviance at the
# REML estimates, which ranked the three optimizers' REML fits by the wrong number.)
criterion <- function(fit) if (isREML(fit)) REMLcrit(fit) else deviance(fit)

best_fit <- function(formula, data, reml) {
  best <- NULL
  best_name <- NA_character_
  for (name in names(controls)) {
    fit <- suppressWarnings(suppressMessages(
      lmer(formula, data = data, REML = reml, control = controls[[name]])))
    if (is.null(best) || criterion(fit) < criterion(best) - 1e-9) {
      best <- fit
      best_name <- name
    }
  }
  list(fit = best, optimizer = best_name)
}

component_name <- function(grp, var1, var2) {
  if (grp == "therapist_id") return("therapist")
  if (grp == "Residual") return("residual")
  if (!is.na(var2) && var2 == "time") return("cov_client_client_time")
  if (var1 == "time") return("client_time")
  "client"
}

r_squared <- function(fit, data) {
  var_fixed <- var(as.vector(model.matrix(fit) %*% fixef(fit)))
  # Johnson (2014): mean over rows of z' Sigma z for every random term (covariances too)
  var_random <- 0
  for (s in VarCorr(fit)) {
    cols <- colnames(s)
    z <- sapply(cols, function(c) if (c == "(Intercept)") rep(1, nrow(data)) else data[[c]])
    z <- matrix(z, nrow = nrow(data))
    var_random <- var_random + mean(rowSums((z %*% s) * z))
  }
  resid <- sigma(fit)^2
  total <- var_fixed + var_random + resid
  c(var_fixed / total, (var_fixed + var_random) / total)
}

fmt <- function(x) trimws(formatC(x, digits = 15, format = "g"))

fixed_rows <- list()
vc_rows <- list()
fit_rows <- list()
refusal_rows <- list()
unchecked_rows <- list()
files <- sort(list.files(outdir, pattern = "^data_.*\\.csv$", full.names = TRUE))
for (path in files) {
  dataset <- sub("^data_(.*)\\.csv$", "\\1", basename(path))
  data <- prepare(read.csv(path, colClasses = c(client_id = "character",
                                                therapist_id = "character")))
  for (model in names(models)) {
    spec <- models[[model]]
    if (dataset %in% degenerate && !(model %in% c("primary", "sens_correlated"))) next
    random <- random_for(dataset, spec$random)
    if (random != spec$random) {
      full <- as.formula(paste(spec$fixed, "+", spec$random))
      msg <- tryCatch({lmer(full, data = data, REML = spec$reml); "fitted without error"},
                      error = function(e) conditionMessage(e))
      refusal_rows[[length(refusal_rows) + 1]] <- data.frame(
        dataset = dataset, model = model, formula = spec$random,
        message = gsub("[\n,]", " ", msg))
      unchecked <- suppressWarnings(suppressMessages(lmer(
        full, data = data, REML = spec$reml,
        control = lmerControl(check.nlev.gtr.1 = "ignore", check.nobs.vs.nRE = "ignore",
                              check.nobs.vs.nlev = "ignore", check.nobs.vs.rankZ = "ignore"))))
      vcu <- as.data.frame(VarCorr(unchecked))
      unchecked_rows[[length(unchecked_rows) + 1]] <- data.frame(
        dataset = dataset, model = model, formula = spec$random,
        loglik = fmt(as.numeric(logLik(unchecked))),
        therapist_variance = fmt(sum(vcu$vcov[vcu$grp == "therapist_id"])),
        intercept_se = fmt(sqrt(as.matrix(vcov(unchecked))[1, 1])))
    }
    formula <- as.formula(paste(spec$fixed, "+", random))
    res <- best_fit(formula, data, spec$reml)
    fit <- res$fit
    est <- fixef(fit)
    se <- sqrt(diag(as.matrix(vcov(fit))))
    sat <- summary(fit, ddf = "Satterthwaite")$coefficients
    terms <- sub("^\\(Intercept\\)$", "Intercept", names(est))
    fixed_rows[[length(fixed_rows) + 1]] <- data.frame(
      dataset = dataset, model = model, term = terms, estimate = fmt(est),
      std_error = fmt(se), df = fmt(sat[, "df"]), p_value = fmt(sat[, "Pr(>|t|)"]))
    vc <- as.data.frame(VarCorr(fit))
    vc_rows[[length(vc_rows) + 1]] <- data.frame(
      dataset = dataset, model = model,
      component = mapply(component_name, vc$grp, vc$var1, vc$var2), variance = fmt(vc$vcov))
    r2 <- r_squared(fit, data)
    fit_rows[[length(fit_rows) + 1]] <- data.frame(
      dataset = dataset, model = model, random = random,
      reml = if (spec$reml) "True" else "False",
      n_obs = nrow(data), loglik = fmt(as.numeric(logLik(fit))), optimizer = res$optimizer,
      singular = if (isSingular(fit)) "True" else "False",
      r2_marginal = fmt(r2[1]), r2_conditional = fmt(r2[2]))
    cat(sprintf("%s %s: loglik %.6f (%s)\n", dataset, model, as.numeric(logLik(fit)),
                res$optimizer))
  }
}

write_table <- function(rows, name) {
  write.csv(do.call(rbind, rows), file.path(outdir, name), row.names = FALSE, quote = FALSE)
}
write_table(fixed_rows, "lme4_fixed.csv")
write_table(vc_rows, "lme4_varcomp.csv")
write_table(fit_rows, "lme4_fit.csv")
write_table(refusal_rows, "lme4_refusals.csv")
write_table(unchecked_rows, "lme4_unchecked.csv")
writeLines(c(R.version.string, paste("lme4", as.character(packageVersion("lme4"))),
             paste("Matrix", as.character(packageVersion("Matrix"))),
             paste("lmerTest", as.character(packageVersion("lmerTest")))),
           file.path(outdir, "lme4_session.txt"))
