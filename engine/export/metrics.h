// metrics.h: a quantize job's results as the two metrics files every export format writes
// (export/common.h stages them last, as the marker of a finished export):
//   loftq_metrics.json  the manifest (tool, inputs and checksums, settings, device), the plan,
//                       and per weight its settings, QLoRA baseline, error after every step and
//                       timings (output errors too when the job had calibration);
//   loftq_metrics.csv   one row per (weight, step): the same numbers for a spreadsheet.
// docs/FORMAT.md lists the fields.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "loftq/job.h"

namespace loftq {

nlohmann::ordered_json metrics_json(const QuantizeResult& r, const nlohmann::ordered_json& manifest);
std::string metrics_csv(const QuantizeResult& r);

}  // namespace loftq
