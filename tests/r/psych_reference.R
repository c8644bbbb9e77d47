# Reference reliability and correlation values from the R package psych, for the Python tests.
#
# Run once from the repository root:   Rscript tests/r/psych_reference.R
# Reads  tests/fixtures/psych/items_wai_s.csv, items_core10.csv  (written by make_items.py)
# Writes tests/fixtures/psych/psych_reliability.csv   alpha / std alpha / omega total
#        tests/fixtures/psych/psych_statsby.csv       within (rwg) and between (rbg) r
#        tests/fixtures/psych/psych_session.json      R and psych versions used
# The tests read only these outputs; R is not needed at test time.
#
# Keys are restated here on purpose (not read from the project's YAML) so that the
# fixtures are an independent check of the Python reversal and subscale assignment:
#   WAI-S (Tracey & Kokotovic 1989): goal 4R 6 10R 11, task 1 2 8 12, bond 3 5 7 9, 1-7.
#   CORE-10 (Barkham et al. 2013): items 2, 3 reversed, 0-4.
suppressPackageStartupMessages(library(psych))

dir <- file.path("tests", "fixtures", "psych")

estimate <- function(x, instrument, scale, subset, session) {
  x <- na.omit(x)                                     # listwise, as the Python code
  a <- psych::alpha(x, check.keys = FALSE, warnings = FALSE)
  om <- suppressWarnings(suppressMessages(
    psych::omega(x, nfactors = 1, fm = "minres", plot = FALSE, flip = FALSE)
  ))
  data.frame(
    instrument = instrument, scale = scale, subset = subset, session = session,
    n = nrow(x), n_items = ncol(x),
    alpha = a$total$raw_alpha, alpha_std = a$total$std.alpha,
    omega_total = om$omega.tot
  )
}

# --- WAI-S, client: 12 items, 1-7, reversed 4 and 10 as 8 - x ---------------------------
wai <- read.csv(file.path(dir, "items_wai_s.csv"))
for (i in c(4, 10)) wai[[paste0("wai_s_", i)]] <- 8 - wai[[paste0("wai_s_", i)]]
wai_key <- list(goal = c(4, 6, 10, 11), task = c(1, 2, 8, 12), bond = c(3, 5, 7, 9))

rows <- list()
for (scale in names(wai_key)) {
  cols <- paste0("wai_s_", wai_key[[scale]])
  rows[[length(rows) + 1]] <- estimate(wai[, cols], "wai_s", scale, "all", NA)
  for (s in sort(unique(wai$session))) {
    rows[[length(rows) + 1]] <- estimate(wai[wai$session == s, cols], "wai_s", scale,
                                         "session", s)
  }
}

# --- CORE-10: 10 items, 0-4, reversed 2 and 3 as 4 - x; one scale ---------------------
core <- read.csv(file.path(dir, "items_core10.csv"))
for (i in c(2, 3)) core[[paste0("core10_", i)]] <- 4 - core[[paste0("core10_", i)]]
rows[[length(rows) + 1]] <- estimate(core[, paste0("core10_", 1:10)], "core10", "core10",
                                     "all", NA)

reliab <- do.call(rbind, rows)
write.csv(reliab, file.path(dir, "psych_reliability.csv"), row.names = FALSE)

# --- Subscale scores (item means) and within/between-client correlations ---------------
scores <- data.frame(client_id = wai$client_id)
for (scale in names(wai_key)) {
  scores[[scale]] <- rowMeans(wai[, paste0("wai_s_", wai_key[[scale]])])
}
# cors = TRUE also returns per-client correlations (3 rows each): their "sd is zero"
# warnings are irrelevant to rwg and rbg and are suppressed.
sb <- suppressWarnings(psych::statsBy(scores, group = "client_id", cors = TRUE))
pairs <- combn(names(wai_key), 2)
cors <- do.call(rbind, lapply(seq_len(ncol(pairs)), function(j) {
  a <- pairs[1, j]; b <- pairs[2, j]
  data.frame(level = c("within", "between"), scale_1 = a, scale_2 = b,
             r = c(sb$rwg[paste0(a, ".wg"), paste0(b, ".wg")],
                   sb$rbg[paste0(a, ".bg"), paste0(b, ".bg")]))
}))
write.csv(cors, file.path(dir, "psych_statsby.csv"), row.names = FALSE)

writeLines(
  sprintf('{"R": "%s", "psych": "%s", "GPArotation": "%s"}',
          paste(R.version$major, R.version$minor, sep = "."),
          as.character(packageVersion("psych")),
          as.character(packageVersion("GPArotation"))),
  file.path(dir, "psych_session.json")
)
print(reliab, digits = 10)
print(cors, digits = 10)
