// targets.h: the fuzz targets, one per parser of outside bytes. Each takes the whole input and
// returns 0 (libFuzzer's convention); a finding aborts (fuzz_support.h). fuzz_main.cpp makes one
// libFuzzer executable per target (LOFTQ_FUZZ=ON, clang); tests/test_fuzz_corpus.cpp replays every
// corpus under fuzz/corpus/<name>/ through the same functions in every build.
#pragma once
#include <cstddef>
#include <cstdint>

namespace loftq::fuzz {

using Target = int (*)(const uint8_t* data, size_t size);

int safetensors(const uint8_t* data, size_t size);    // a .safetensors file, every tensor read
int shard_index(const uint8_t* data, size_t size);    // model.safetensors.index.json over two shards
int config(const uint8_t* data, size_t size);         // config.json beside a tiny model, then loaded
int llama2c(const uint8_t* data, size_t size);        // a llama2.c .bin checkpoint, every tensor read
int packed(const uint8_t* data, size_t size);         // a packed LoftQ .safetensors, every weight dequantized
int plan(const uint8_t* data, size_t size);           // a plan (*.loftq.json), resolved against a model
int tok_llama2c(const uint8_t* data, size_t size);    // llama2.c tokenizer.bin
int tok_spm(const uint8_t* data, size_t size);        // sentencepiece tokenizer.model
int tok_hf(const uint8_t* data, size_t size);         // Hugging Face tokenizer.json
int dataset(const uint8_t* data, size_t size);        // fine-tuning data: JSONL or text (first byte picks)
int export_json(const uint8_t* data, size_t size);    // an HF LoftQ export's adapter config or metrics (first byte picks)
int gguf(const uint8_t* data, size_t size);           // a .gguf file: metadata through every getter, every readable tensor read

struct NamedTarget {
    const char* name;   // also the corpus folder: fuzz/corpus/<name>/
    Target fn;
};
inline constexpr NamedTarget kTargets[] = {
    {"safetensors", safetensors}, {"shard_index", shard_index}, {"config", config},
    {"llama2c", llama2c},         {"packed", packed},           {"plan", plan},
    {"tok_llama2c", tok_llama2c}, {"tok_spm", tok_spm},         {"tok_hf", tok_hf},
    {"dataset", dataset},         {"export_json", export_json}, {"gguf", gguf},
};

}  // namespace loftq::fuzz
