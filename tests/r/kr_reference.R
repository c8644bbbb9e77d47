# Kenward-Roger reference values (lmerTest's ddf = "Kenward-Roger", through pbkrtest).
#
# Usage (from the project root; tests/fixtures/lme4/make_fixtures.py runs it):
#   Rscript tests/r/kr_reference.R tests/fixtures/lme4
#
# For the frozen data sets default and large_therapist it computes the model variables as
# tests/r/lme4_reference.R does, fits the REML models below (bobyqa with tight
# tolerances, so that the optimum is lme4's to many digits) and writes
#   lme4_kr.csv  dataset, model, term, estimate, std_error, df
#                (summary(fit, ddf = "Kenward-Roger"): the SE from pbkrtest's adjusted
#                covariance vcovAdj, the df from pbkrtest's Lb_ddf)
# and appends the pbkrtest version to lme4_session.txt.

suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest)})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else file.path("tests", "fixtures", "lme4")

prepare <- function(d) {
  d <- d[order(d$therapist_id, d$client_id, d$session), ]
  d$time <- d$session - 1
  for (k in c("goal", "task", "bond")) {
    client_means <- tapply(d[[k]], d$client_id, mean)
    cm <- as.numeric(client_means[as.character(d$client_id)])
    d[[paste0(k, "_between")]] <- cm - mean(client_means)
    d[[paste0(k, "_within")]] <- d[[k]] - cm
  }
  d
}

fixed <- paste("wellbeing ~ time + goal_within + task_within + bond_within",
               "+ goal_between + task_between + bond_between")
models <- list(
  primary = paste(fixed, "+ (1 | therapist_id) + (1 | client_id) + (0 + time | client_id)"),
  growth = "wellbeing ~ time + (1 | therapist_id) + (1 | client_id) + (0 + time | client_id)",
  sens_correlated = paste(fixed, "+ (1 | therapist_id) + (1 + time | client_id)")
)

rows <- list()
for (dataset in c("default", "large_therapist")) {
  d <- prepare(read.csv(file.path(outdir, paste0("data_", dataset, ".csv")),
                        colClasses = c(client_id = "character", therapist_id = "character")))
  for (name in names(models)) {
    fit <- lmer(as.formula(models[[name]]), data = d, REML = TRUE,
                control = lmerControl(optimizer = "bobyqa",
                                      optCtrl = list(rhobeg = 2e-4, rhoend = 2e-10)))
    tab <- coef(summary(fit, ddf = "Kenward-Roger"))
    rows[[length(rows) + 1]] <- data.frame(
      dataset = dataset, model = name,
      term = sub("^\\(Intercept\\)$", "Intercept", rownames(tab)),
      estimate = tab[, "Estimate"], std_error = tab[, "Std. Error"], df = tab[, "df"])
  }
}
write.csv(do.call(rbind, rows), file.path(outdir, "lme4_kr.csv"), row.names = FALSE)
cat(sprintf("pbkrtest %s\n", as.character(packageVersion("pbkrtest"))),
    file = file.path(outdir, "lme4_session.txt"), append = TRUE)
