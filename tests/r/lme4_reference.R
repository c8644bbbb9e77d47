# lme4 reference values for tests/test_models.py.
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
#   lme4_unchecked.csv dataset, model, loglik, therapist variance, intercept SE, client
#                     slope variance and isSingular of the full random part with lme4's
#                     checks switched off (where lme4 fits it without refusing, e.g. the
#                     uncorrelated client slope on two sessions per client, this shows
#                     what lme4 makes of it: singular for the alliance growth models)
#   lme4_session.txt  R, lme4 and lmerTest versions
#
# Every model's rows and predictors are built by `build_data` below, written in base R from
# the definitions in pipeline/models.yaml's header and docs/analysis-plan.md (section 2),
# not from the Python code: the `complete` rows are those with client, therapist, session,
# goal, task and bond, and the outcome whenever the data have an outcome column (so the
# models of the alliance alone use only the sessions with an outcome), and the client
# covariates a model needs; every predictor (time, person means, their therapist / client
# split) is computed on the rows the model keeps. On data_missing.csv (blank scores:
# sessions with alliance but no outcome and the reverse, one subscale missing, clients
# with one or no complete row; blank covariate cells in clients_missing.csv) this is what
# differs between models. Models built further:
#   lagged              each complete row paired with the client's previous complete row
#                       (k_within_lag, wellbeing_lag); a client's first row is left out;
#                       the person means use all the client's complete rows
#   sens_detrended      k_within = residual of the client's own OLS line of k on time
#   sens_min3           clients with >= 3 complete rows; predictors computed on those rows
#   therapist_vs_client k_therapist = therapist's mean of their clients' means - mean of
#                       client means; k_client = client mean - therapist's mean
#   approach_main, moderation_approach, modality_main, moderation_modality
#                       the client covariates of the FROZEN clients_<name>.csv (data sets
#                       without one are skipped); terms renamed to the project's patsy
#                       names (approachCBT -> C(approach)[T.CBT])
#   goal_only, task_only, bond_only, alliance_levels_task, alliance_levels_bond,
#   alliance_time_goal, alliance_time_task, alliance_time_bond
#                       the complete rows (outcome included) and person means, as the
#                       primary model; they differ from it by the formula only. These and
#                       primary / sens_correlated are also fitted on the degenerate sets.
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
primary_fixed <- paste("wellbeing ~ time + goal_within + task_within + bond_within",
                       "+ goal_between + task_between + bond_between")
moderated <- function(cov) {
  paste("wellbeing ~ time + (goal_within + task_within + bond_within) *", cov,
        "+ goal_between + task_between + bond_between")
}
# `build` (complete, lagged, detrended) and `min_sessions`: how the rows and predictors
# are made (see build_data); `covariates`: client covariates of clients_<dataset>.csv
models <- c(models, list(
  lagged = list(fixed = paste("wellbeing ~ time + wellbeing_lag + goal_within_lag",
                              "+ task_within_lag + bond_within_lag + goal_between",
                              "+ task_between + bond_between"),
                random = random3, reml = TRUE, build = "lagged"),
  sens_detrended = list(fixed = primary_fixed, random = random3, reml = TRUE,
                        build = "detrended"),
  sens_min3 = list(fixed = primary_fixed, random = random3, reml = TRUE, min_sessions = 3),
  therapist_vs_client = list(fixed = paste("wellbeing ~ time + total_within + total_client",
                                           "+ total_therapist"),
                             random = random3, reml = TRUE, build = "complete"),
  approach_main = list(fixed = paste(primary_fixed, "+ approach"), random = random3,
                       reml = TRUE, covariates = "approach"),
  moderation_approach = list(fixed = moderated("approach"), random = random3, reml = TRUE,
                             covariates = "approach"),
  modality_main = list(fixed = paste(primary_fixed, "+ modality"), random = random3,
                       reml = TRUE, covariates = "modality"),
  moderation_modality = list(fixed = moderated("modality"), random = random3, reml = TRUE,
                             covariates = "modality")
))
# The models that differ from the ones above by the formula only: the `complete` rows
# (every model variable and the outcome present, as models.yaml says for the models of
# the alliance alone too), the person means on those rows.
models <- c(models, list(
  goal_only = list(fixed = "wellbeing ~ time + goal_within + goal_between", random = random3,
                   reml = TRUE, build = "complete"),
  task_only = list(fixed = "wellbeing ~ time + task_within + task_between", random = random3,
                   reml = TRUE, build = "complete"),
  bond_only = list(fixed = "wellbeing ~ time + bond_within + bond_between", random = random3,
                   reml = TRUE, build = "complete"),
  alliance_levels_task = list(fixed = "task ~ 1", random = random2, reml = TRUE,
                              build = "complete"),
  alliance_levels_bond = list(fixed = "bond ~ 1", random = random2, reml = TRUE,
                              build = "complete"),
  alliance_time_goal = list(fixed = "goal ~ time", random = random3, reml = TRUE,
                            build = "complete"),
  alliance_time_task = list(fixed = "task ~ time", random = random3, reml = TRUE,
                            build = "complete"),
  alliance_time_bond = list(fixed = "bond ~ time", random = random3, reml = TRUE,
                            build = "complete")
))
# Models also fitted on the degenerate data sets (with the random part of `random_for`).
on_degenerate <- c("primary", "sens_correlated", "goal_only", "task_only", "bond_only",
                   "alliance_levels_task", "alliance_levels_bond", "alliance_time_goal",
                   "alliance_time_task", "alliance_time_bond")

# The therapist part of each client mean: therapist_id's mean of their clients' means
# (each client counted once) minus the mean of the client means, and the client's
# deviation from it (Baldwin, Wampold & Imel 2007).
add_levels <- function(d) {
  for (k in c("goal", "task", "bond", "total")) {
    client_means <- tapply(d[[k]], d$client_id, mean)
    therapist_of <- tapply(d$therapist_id, d$client_id, function(x) x[1])
    therapist_means <- tapply(client_means, therapist_of[names(client_means)], mean)
    cm <- as.numeric(client_means[as.character(d$client_id)])
    tm <- as.numeric(therapist_means[as.character(d$therapist_id)])
    d[[paste0(k, "_therapist")]] <- tm - mean(client_means)
    d[[paste0(k, "_client")]] <- cm - tm
  }
  d
}

# Each row with the values of the same client's previous row (rows sorted by client and
# session); rows without one are left out.
add_previous <- function(d) {
  n <- nrow(d)
  has_prev <- c(FALSE, d$client_id[-1] == d$client_id[-n])
  prev <- seq_len(n) - 1
  for (v in c("goal_within", "task_within", "bond_within", "total_within", "wellbeing")) {
    d[[paste0(v, "_lag")]] <- ifelse(has_prev, d[[v]][pmax(prev, 1)], NA)
  }
  d[has_prev, , drop = FALSE]
}

# k_within replaced by the residuals of lm(k ~ time) fitted to each client's rows alone.
detrend <- function(d) {
  for (k in c("goal", "task", "bond", "total")) {
    res <- numeric(nrow(d))
    for (rows in split(seq_len(nrow(d)), d$client_id)) {
      res[rows] <- residuals(lm(d[[k]][rows] ~ d$time[rows]))
    }
    d[[paste0(k, "_within")]] <- res
  }
  d
}

# The rows and predictors of one model: covariates merged, complete rows of the columns
# the model uses, clients with too few of them dropped, then the person means (and their
# therapist / client split) on the rows that are left, then lags or detrending.
build_data <- function(raw, clients, spec) {
  d <- raw
  if (!is.null(spec$covariates)) {
    d <- merge(d, clients[c("client_id", spec$covariates)], by = "client_id", all.x = TRUE)
    for (cov in spec$covariates) d[[cov]] <- factor(d[[cov]])
  }
  # the outcome is needed by every model when the data have one (models.yaml: `complete`)
  outcome <- if ("wellbeing" %in% names(raw)) "wellbeing" else NULL
  need <- c("client_id", "therapist_id", "session", "goal", "task", "bond", outcome,
            spec$covariates)
  d <- d[complete.cases(d[need]), , drop = FALSE]
  if (!is.null(spec$min_sessions)) {
    n_rows <- table(d$client_id)
    d <- d[d$client_id %in% names(n_rows)[n_rows >= spec$min_sessions], , drop = FALSE]
  }
  d <- add_levels(prepare(d))
  if (identical(spec$build, "lagged")) d <- add_previous(d)
  if (identical(spec$build, "detrended")) d <- detrend(d)
  rownames(d) <- NULL
  d
}

# R's names of covariate columns as the project's (patsy) names: approachhumanistic ->
# C(approach)[T.humanistic], also inside interactions.
project_terms <- function(terms, covariates) {
  for (cov in covariates) {
    terms <- sub(paste0("(^|:)", cov, "(.+)$"), paste0("\\1C(", cov, ")[T.\\2]"), terms)
  }
  terms
}

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
  raw <- read.csv(path, colClasses = c(client_id = "character", therapist_id = "character"),
                  na.strings = c("", "NA"))
  clients_path <- file.path(outdir, paste0("clients_", dataset, ".csv"))
  clients <- if (file.exists(clients_path)) {
    read.csv(clients_path, colClasses = "character", na.strings = c("", "NA"))
  } else NULL
  for (model in names(models)) {
    spec <- models[[model]]
    if (dataset %in% degenerate && !(model %in% on_degenerate)) next
    if (!is.null(spec$covariates) && is.null(clients)) next
    data <- build_data(raw, clients, spec)
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
        intercept_se = fmt(sqrt(as.matrix(vcov(unchecked))[1, 1])),
        client_time_variance = fmt(sum(vcu$vcov[vcu$var1 %in% "time" & is.na(vcu$var2)])),
        singular = if (isSingular(unchecked)) "True" else "False")
    }
    formula <- as.formula(paste(spec$fixed, "+", random))
    res <- best_fit(formula, data, spec$reml)
    fit <- res$fit
    est <- fixef(fit)
    se <- sqrt(diag(as.matrix(vcov(fit))))
    sat <- summary(fit, ddf = "Satterthwaite")$coefficients
    terms <- project_terms(sub("^\\(Intercept\\)$", "Intercept", names(est)),
                           spec$covariates)
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
