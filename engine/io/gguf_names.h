// gguf_names.h: how a LLaMA-family model sits in a GGUF file, shared by the checkpoint reader
// (io/checkpoint.cpp) and the GGUF export (train/gguf_export.h):
//   - tensor names, llama.cpp's (token_embd, blk.N.attn_q, ...) <-> Hugging Face's
//     (model.embed_tokens, model.layers.N.self_attn.q_proj, ...);
//   - the q/k row order: llama.cpp's LLAMA architecture rotates interleaved pairs (2i, 2i+1) as
//     Meta's original checkpoints (and llama2.c) do, HF rotates halves (i, i + d/2); llama.cpp's
//     converter permutes HF's q_proj / k_proj rows within each head, and we undo or redo that;
//   - the llama.* metadata keys <-> ModelConfig.
// Leaves out: other architectures' tensor sets (qwen2's biases are mapped, its NEOX RoPE needs no
// permutation), tokenizer keys (train/tokenizer_gguf.cpp, train/gguf_export.cpp).
#pragma once
#include <cstdint>
#include <string>

namespace loftq {

class GgufFile;
struct ModelConfig;

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; "" when not a known name.
std::string gguf_to_hf_name(const std::string& gguf);
// The inverse; "" when not a known name.
std::string hf_to_gguf_name(const std::string& hf);

// Within one head of hd rows: the HF (rotate-half) row r holds the interleaved row
// rope_interleaved_row(r, hd), and the interleaved row r holds the HF row rope_half_row(r, hd).
// Both take and return rows counted from the start of the weight (head h = r / hd).
inline int64_t rope_interleaved_row(int64_t r, int64_t hd) {
    const int64_t h = r / hd, w = r % hd, half = w / (hd / 2), i = w % (hd / 2);
    return h * hd + 2 * i + half;
}
inline int64_t rope_half_row(int64_t r, int64_t hd) {
    const int64_t h = r / hd, w = r % hd, i = w / 2, half = w % 2;
    return h * hd + half * (hd / 2) + i;
}

// general.architecture values whose q/k rows are stored interleaved (llama.cpp LLAMA_ROPE_TYPE_NORM).
bool gguf_arch_interleaves_rope(const std::string& arch);

// SentencePiece's space, U+2581 ("\xE2\x96\x81"), as GGUF's "llama" pieces store it <-> ' ' as
// llama2.c's pieces store it.
std::string spm_to_spaces(const std::string& piece);
std::string spaces_to_spm(const std::string& piece);

// The GGUF's "llama" tokenizer as a llama2.c tokenizer.bin (int32 max_token_length, then per token
// float32 score, int32 length, bytes; U+2581 written as ' '), so that an export made from a GGUF
// carries a tokenizer beside it. "" when the file has none of that kind, or its special ids are
// not llama2.c's (unk 0, bos 1, eos 2), which that format cannot say.
std::string gguf_llama2c_tokenizer(const GgufFile& f);

// The architecture facts from `<arch>.*` keys (and the token table's size); throws loftq::Error
// naming the file and key for an unsupported architecture, missing sizes, partial rotary
// (rope.dimension_count != head size) or RoPE scaling we do not reproduce.
ModelConfig gguf_model_config(const GgufFile& f);

}  // namespace loftq
