// sweep.h: the sensitivity sweep behind automatic mixed precision. For every target weight of a
// plan and every candidate setting (default: keep in 16-bit, and int8, nf4, nf3, nf2 x LoRA ranks
// 8/16/32/64), the LoftQ error it would give (weight error and, with calibration, output error;
// loftq/input_stats.h) and its exact bytes (loftq/budget.h: packed codes + block scales + LoRA
// factors at 2 bytes, as plan_size counts them; keep = the tensor at its source size).
//
// Two ways to get the errors, chosen by SweepMode:
//   Full  every candidate runs loftq_decompose with the plan's T, seed, oversampling and power
//         iterations: exactly the errors `loftq quantize` would report for that setting. Cost:
//         candidates x one LoftQ run.
//   Fast  per weight and quantizer, one quantization q(W) (QLoRA's Q, the first LoftQ step's
//         backbone, shared by every rank) and one randomized SVD of W - q(W) at the largest
//         rank (one range finder): a rank-r truncation of it is the first step's exact rank-r
//         term, its error ||W - Q - L_r||^2 = ||W - Q||^2 - sum_{i<=r} s_i^2. The predicted
//         error is LoftQ's after step 1 (later steps lower it by a few percent, at 2 bits most;
//         the allocator compares candidates, and the order holds). Cost: quantizers x one step
//         at the largest rank, about 1.5x one uniform LoftQ run (docs/PERFORMANCE.md).
//   Auto  Full when candidates x T x target elements is small (under 1e9), else Fast.
// Work is shared: each weight is read once, its norms and input products computed once.
// Results are cached as JSON in `cache_dir`, keyed by the checkpoint's content (XXH3 of its
// files), the targets, the candidate list, the settings and the calibration's key, so reopening
// a model reuses them; any change makes a new key.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "core/name_table.h"
#include "loftq/input_stats.h"
#include "loftq/plan.h"

namespace loftq {

enum class SweepMode : uint8_t { Auto, Fast, Full };
inline constexpr auto kSweepModeNames =
    name_table<SweepMode>("sweep mode", {{SweepMode::Auto, "auto"}, {SweepMode::Fast, "fast"}, {SweepMode::Full, "full"}});

struct SweepOptions {
    std::string model;
    Plan plan;                      // targets (rules, overrides), block, T, SVD settings, seed
    std::vector<QuantKind> quants = {QuantKind::INT8, QuantKind::NF4, QuantKind::NF3, QuantKind::NF2};
    std::vector<int> ranks = {8, 16, 32, 64};
    bool keep = true;               // offer "keep in 16-bit" (error 0, source bytes)
    SweepMode mode = SweepMode::Auto;
    std::shared_ptr<const CalibStats> calib;   // output errors too (CPU)
    std::string cache_dir;          // "" = no cache
    int threads = 0;                // 0 = all hardware threads
};

struct SweepCandidate {
    bool keep = false;              // 16-bit, not a target
    WeightSettings s{};             // quant, block, rank, iters, svd (keep: unused)
    uint64_t bytes = 0;             // exact, as plan_size counts it
    double error = 0;               // ||W - Q - B A|| / ||W||  (keep: 0)
    double out_error = -1;          // ||X (W - Q - B A)^T|| / ||X W^T||, -1 without calibration
    std::string label() const;      // "keep", "nf2 r16"
};

struct WeightSweep {
    std::string name, module;
    int layer = -1;
    int64_t rows = 0, cols = 0;
    double w_norm = 0, out_norm = 0;
    std::vector<SweepCandidate> candidates;   // keep first (when offered), then quants x ranks
};

struct SweepResult {
    std::vector<WeightSweep> weights;   // the plan's targets, in tensor order
    uint64_t fixed_bytes = 0;           // tensors that are never targets, at source size
    uint64_t params = 0;                // all parameters (the bits-per-parameter denominator)
    uint64_t fp16_bytes = 0;            // the whole model at 16 bits
    SweepMode mode = SweepMode::Fast;   // resolved (Fast or Full)
    bool calibrated = false;
    int iters = 0;                      // T of the plan the errors are for (Fast: after step 1)
    std::string key;                    // cache key
    bool from_cache = false;
    double seconds = 0;                 // compute time (of the original run when from the cache)
    std::vector<std::string> notes;
};

struct SweepEvent {
    int weights_done = 0, weights_total = 0;
    std::string name{};                 // the weight just done ("" for messages)
    double fraction = 0, elapsed = 0, eta = -1;
    std::string message{};
};

// Events come from worker threads, one at a time. Throws loftq::Error (file and tensor named)
// and loftq::Cancelled (nothing cached).
SweepResult run_sweep(const SweepOptions& opt, const std::function<void(const SweepEvent&)>& on_event,
                      const CancelToken& cancel);

nlohmann::ordered_json sweep_to_json(const SweepResult& r);
SweepResult sweep_from_json(const nlohmann::json& j, const std::string& source);   // throws loftq::Error
// The default cache folder: $XDG_CACHE_HOME/loftq/sweeps (else ~/.cache/loftq/sweeps).
std::string default_sweep_cache_dir();

}  // namespace loftq
