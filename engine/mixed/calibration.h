// calibration.h: the input statistics of every projection of a LLaMA-family model on
// calibration text (loftq/input_stats.h): the original model (W, no adapters) runs forward once
// over a token budget of the text, and each distinct projection input (per layer: the attention
// input shared by q/k/v, o's input, the MLP input shared by gate/up, down's input) sums its Gram
// X^T X in float64. Inputs up to max_full_dim features keep the full Gram (exact output errors);
// wider ones keep its diagonal (see input_stats.h for why), and CalibStats::notes says which.
//
// Data: a text file or JSONL as fine-tuning reads it (train/dataset.h); every real token counts
// (prompts too: the projections see them), padding does not. Windows of `seq` tokens, one
// sequence per forward, taken in file order until `tokens` are reached (the last one cut).
// Leaves out: models the CPU trainer cannot run (GPT-2, BERT): collect_calibration throws
// loftq::Error saying why, and callers fall back to weight errors.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/cancel.h"
#include "core/error.h"
#include "loftq/input_stats.h"

namespace loftq {

// The model's forward pass cannot run on this checkpoint (not a LLaMA-family decoder the CPU
// model supports): callers may fall back to weight errors.
struct CalibrationUnsupported : Error {
    using Error::Error;
};

struct CalibOptions {
    std::string model;            // the original checkpoint
    std::string data;             // text or JSONL
    std::string tokenizer;        // "" = beside the model
    int64_t tokens = 4096;        // token budget
    int64_t min_tokens = 256;     // fewer real tokens in the file is an error
    int seq = 256;                // window length
    int64_t max_full_dim = 2048;  // inputs wider than this keep the Gram's diagonal only
    int threads = 0;
};

// progress(fraction 0..1). Throws loftq::Error naming the file (too few tokens, a model the
// forward cannot run, a tokenizer that does not match) and loftq::Cancelled.
CalibStats collect_calibration(const CalibOptions& opt, const std::function<void(double)>& progress,
                               const CancelToken& cancel);

}  // namespace loftq
