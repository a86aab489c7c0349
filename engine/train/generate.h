// generate.h: greedy (argmax) text generation with a LlamaModel, for the sample a fine-tuning run
// prints at the end and the GUI shows. There is no KV cache in the CPU model: each new token
// re-runs the forward over the whole sequence (B = 1), so cost grows with length squared; fine
// for the 64-token samples it is used for, not a chat loop.
// Leaves out: temperature / top-p sampling, batching, stop strings.
#pragma once
#include <string>
#include <vector>

#include "core/cancel.h"
#include "model/llama.h"
#include "train/tokenizer.h"

namespace loftq {

// Appends up to `max_new` argmax tokens to `prompt` (which must hold at least one id), stopping
// after `eos` (when >= 0) or at the model's max_seq. Returns only the new ids. Polls `cancel`
// (may be null) before each token.
std::vector<int> generate_greedy(LlamaModel& model, const std::vector<int>& prompt, int max_new, int eos,
                                 const CancelToken* cancel = nullptr);

// Text in, text out: encodes `prompt` with BOS ("" = BOS only), generates, and returns the prompt
// followed by the decoded continuation (piece by piece, as llama2.c's run.c prints).
std::string generate_text(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, int max_new,
                          const CancelToken* cancel = nullptr);

}  // namespace loftq
