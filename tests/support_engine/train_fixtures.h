// train_fixtures.h: test fixtures over the engine (so not in tests/support, which links only
// loftq_core): a small synthetic model with its demo corpus and byte-level tokenizer, and the
// config.json of a hand-written LLaMA-family checkpoint. Shared by test_model, test_train and
// test_cuda_train.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace loftq::test {

// A synthetic LLaMA-shaped F32 model (io/synthetic_model.h: `layers` decoder layers, hidden,
// intermediate, 4 heads / 2 kv heads, vocabulary 512) in ROOT/model with a demo tokenizer.bin,
// and demo corpora ROOT/train.txt (500 stories, seed 7) and ROOT/eval.txt (120 stories, seed 99).
struct Synth {
    std::string root, model, data, eval;
};
Synth make_synth(const std::string& tag, int hidden, int intermediate, int layers = 2);

// config.json of a LlamaForCausalLM-style checkpoint (model_type "llama", "qwen2", ...), fp32.
nlohmann::json llama_config_json(const std::string& model_type, int hidden, int intermediate, int layers, int heads,
                                 int kv_heads, int vocab, bool tied, int max_positions);

}  // namespace loftq::test
