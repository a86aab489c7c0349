// evaluate.h: the held-out loss and its batch helpers, shared by run_eval (evaluate.cpp) and the
// fine-tune loop's evaluations and batches (trainer.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "model/llama.h"
#include "train/dataset.h"
#include "train/trainer.h"

namespace loftq {

// Copies the examples `ex` (B of them) into B x T token/target rows; returns the scored target
// count.
int64_t fill_rows(const std::vector<const Example*>& ex, int T, std::vector<int>& tok, std::vector<int>& tgt);

// Every example must be T long with ids inside the model's vocabulary; throws loftq::Error
// naming `file` and the example.
void check_examples(const std::vector<Example>& ex, int T, int vocab, const std::string& file);

// Mean cross-entropy over the scored tokens of the first `max_batches` batches (0 = all) of B
// examples, in order; NaN when none is scored. `scored` (may be null) receives the token count.
double mean_loss(LlamaModel& model, const std::vector<Example>& ex, int B, int T, int max_batches,
                 const CancelToken& cancel, int64_t* scored);

// TrainOptions::eval_original: the mean loss of the start's original model (16-bit W as stored,
// no adapter) over the first opt.eval_batches batches of `eval_ex` (from `eval_file`), on `dev`.
// The model is loaded, measured and freed, so that only one model is in memory at a time.
// `say` gets the loader's lines.
double original_model_loss(const TrainOptions& opt, ComputeDevice dev, const std::vector<Example>& eval_ex,
                           const std::string& eval_file, const CancelToken& cancel,
                           const std::function<void(const std::string&)>& say);

}  // namespace loftq
