// generate.h: text generation with a LlamaModel: the prompt is run once through the model
// (prefill, filling the KV cache: LlamaModel::decode), then one token per step, each picked by a
// TokenSampler (sampling.h: greedy, temperature, top-k, top-p, seed) and handed to a callback as it
// comes (streaming), until EOS, the token limit or the model's context. `loftq generate`, the
// Studio's "Try it" panel and the sample at the end of a fine-tune all call it.
// Also: load_generator, the model + adapter + tokenizer a user names (a checkpoint, a LoftQ
// export, a fine-tune run or its adapter folder), on the CPU or the CUDA device.
// Leaves out: batching several prompts, stop strings, chat templates.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "core/name_table.h"
#include "device/compute_device.h"
#include "model/llama.h"
#include "train/sampling.h"
#include "train/tokenizer.h"

namespace loftq {

struct GenerateOptions {
    int max_tokens = 128;        // new tokens at most
    SamplingOptions sampling;
    bool add_bos = true;         // the prompt starts with BOS (when the tokenizer has one)
    bool stop_at_eos = true;
};

enum class GenerateStop : uint8_t { Eos, Length, Context };
inline constexpr auto kGenerateStopNames = name_table<GenerateStop>(
    "stop", {{GenerateStop::Eos, "eos"}, {GenerateStop::Length, "length"}, {GenerateStop::Context, "context"}});

// One generated token as the stream sees it. `text` is what it adds to the output: whole UTF-8
// characters only (a character split over several byte tokens arrives with its last byte), so a
// receiver can append it to a text widget as is.
struct GeneratedToken {
    int index = 0;      // 0, 1, ... among the new tokens
    int id = 0;
    std::string text;
};

struct GenerateResult {
    std::vector<int> prompt_ids;   // as run (BOS first when added)
    std::vector<int> ids;          // the new tokens (EOS included when it stopped there)
    std::string text;              // their text (EOS adds none)
    GenerateStop stop = GenerateStop::Length;
    double prefill_seconds = 0, decode_seconds = 0;
    double tokens_per_second() const;   // new tokens after the first / decode time
};

using TokenSink = std::function<void(const GeneratedToken&)>;

// Generates from prompt ids (at least one). `eos` < 0: none. `tok` (may be null) makes the
// tokens' text; without it GeneratedToken::text and GenerateResult::text stay empty. Resets the
// model's cache first. Polls `cancel` (may be null) before each step: a cancel throws Cancelled.
GenerateResult generate_ids(LlamaModel& model, const std::vector<int>& prompt, int eos, const GenerateOptions& opt,
                            const Tokenizer* tok, const TokenSink& on_token = {}, const CancelToken* cancel = nullptr);

// Text in: encodes `prompt` (BOS first when opt.add_bos; an empty prompt is BOS alone).
GenerateResult generate(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& opt,
                        const TokenSink& on_token = {}, const CancelToken* cancel = nullptr);

// The prompt followed by `max_new` greedy tokens' text (the sample a fine-tune prints).
std::string generate_text(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, int max_new,
                          const CancelToken* cancel = nullptr);

// ---- What to generate with.
// model: a checkpoint (HF folder, .safetensors, llama2.c .bin, .gguf) or a LoftQ export (its
//   backbone with its LoftQ initialization, loftq_init/), or a fine-tune run's output folder or
//   an adapter folder (then taken as the adapter; a run that stopped without one is refused);
// adapter: a PEFT adapter folder (a fine-tune's OUT/adapter) or a run folder holding one. Its
//   loftq_base.json says how the run built its frozen base (the export, or the LoftQ / QLoRA
//   initialization made in memory): that base is rebuilt, on `model` when given, else on the
//   model the run used; then the adapter's A and B replace the LoRA start.
struct GeneratorSource {
    std::string model, adapter, tokenizer;   // tokenizer "" = beside the model (or in the .gguf)
    ComputeDevice device = ComputeDevice::Cpu;
    int threads = 0;                          // 0 = all cores
};
struct Generator {
    std::unique_ptr<LlamaModel> model;
    std::unique_ptr<Tokenizer> tok;
    std::string where;        // "cpu" or "cuda, <GPU name>"
    std::string description;  // one line: what was loaded (model, init, adapter)
};
// Throws loftq::Error naming the file (no model, an adapter whose shapes do not fit, no
// tokenizer). `say` (may be empty) gets the loader's progress lines.
// `cancel` (may be null) is polled while the model loads: a cancel throws Cancelled.
Generator load_generator(const GeneratorSource& src, const std::function<void(const std::string&)>& say = {},
                         const CancelToken* cancel = nullptr);

}  // namespace loftq
