// Published measurements (tests/sim/published.csv) replayed through the
// simulator in fixed-layout mode, and the fit of the shared efficiency
// factors on the rows marked `calibration` (never on `validation` rows).
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "sim/search.h"

namespace moerack::sim {

struct PublishedRow {
  std::string id, model, hardware, precision, kv_dtype, phase, metric, role, source;
  int64_t isl = 0, osl = 0;
  int gpus = 0, tp = 1, ep = 1, mtp = 0;
  double batch_per_gpu = 0;  // 0: not published (decode: the KV-limited batch; prefill: default)
  double value = 0;
};

struct RowResult {
  PublishedRow row;
  double predicted = 0;
  double error = 0;  // predicted / published - 1
  std::string bound;
  std::string failure;  // non-empty when the row could not be simulated
};

// Parses the CSV (header names the columns; quoted fields may hold commas).
StatusOr<std::vector<PublishedRow>> LoadPublished(const std::string& path);

// Simulates every row with `eff`.
std::vector<RowResult> Replay(const std::vector<PublishedRow>& rows, const Efficiency& eff);

// Median of |error| over rows with `role` ("" = all) that simulated.
double MedianAbsError(const std::vector<RowResult>& results, const std::string& role);

// Coordinate search of the efficiency factors (within physically plausible
// ranges) minimising the mean |log(simulated / published)| over the
// calibration rows only; returns the fitted factors.
Efficiency FitEfficiency(const std::vector<PublishedRow>& rows, const Efficiency& start);

}  // namespace moerack::sim
