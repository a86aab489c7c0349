// gguf_export.h: a model as llama.cpp runs it: one .gguf (llama architecture) from anything
// `loftq generate` can load — a checkpoint, a LoftQ export, a fine-tune run or adapter — with
// every LoRA merged into its weight, W' = W_base + scale * B A (W_base: the stored or
// dequantized backbone, Q for a LoftQ / QLoRA base), so that llama.cpp computes what our model
// computes. Layout (docs/FORMAT.md, "GGUF"):
//   - tensors under llama.cpp's names (io/gguf_names.h), q/k rows back in the interleaved RoPE
//     order; 1-D norms F32; matrices in the chosen type (F32, F16 or Q8_0; a Q8_0 matrix whose
//     rows do not split into 32-value blocks is written F16, as llama.cpp's converter does);
//     tied embeddings write no output.weight;
//   - llama.* metadata from the config, general.file_type, and the tokenizer as GGUF's "llama"
//     kind (tokens, scores, token types, special ids), from a llama2.c, SentencePiece or GGUF
//     tokenizer; provenance under loftq.*.
// The file is written whole or not at all (io/gguf_writer.h); the source is never modified.
// Leaves out: byte-level BPE tokenizers (Llama 3, Qwen2: refused), qkv biases, RoPE scaling,
// k-quants.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/cancel.h"
#include "core/name_table.h"
#include "train/generate.h"

namespace loftq {

enum class GgufWeightType : uint8_t { F32, F16, Q8_0 };
inline constexpr auto kGgufWeightTypeNames = name_table<GgufWeightType>(
    "GGUF weight type", {{GgufWeightType::F32, "f32"}, {GgufWeightType::F16, "f16"}, {GgufWeightType::Q8_0, "q8_0"}});

struct GgufExportOptions {
    GeneratorSource source;       // model / export / run (+ adapter), as for generation; CPU only
    std::string out;              // the .gguf to write
    GgufWeightType type = GgufWeightType::F16;
    bool backbone_only = false;   // leave the LoRA out: the (quantized) backbone alone
    std::string name;             // general.name; "" = the source's file or folder name
};

struct GgufExportResult {
    std::string path, description;
    uint64_t bytes = 0;
    int tensors = 0;
    int f16_fallbacks = 0;        // Q8_0 asked, rows not a multiple of 32: written F16
    int merged_sites = 0;         // weights with a LoRA merged in
    double seconds = 0;
};

// Throws loftq::Error naming the file (unsupported model or tokenizer, an output that is the
// source, a write failure); a cancel throws Cancelled and leaves no file. `say` gets lines.
GgufExportResult export_gguf(const GgufExportOptions& opt, const std::function<void(const std::string&)>& say = {},
                             const CancelToken* cancel = nullptr);

}  // namespace loftq
