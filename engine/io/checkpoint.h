// checkpoint.h: one view over every checkpoint form a user can open, lazily (memory-mapped):
//   - a Hugging Face folder: config.json + model.safetensors, or shards listed in
//     model.safetensors.index.json (weight_map: tensor -> shard file), tokenizer files beside;
//   - a single .safetensors file (config.json beside it is read if present);
//   - a llama2.c .bin checkpoint (7 int32 header: dim, hidden_dim, n_layers, n_heads,
//     n_kv_heads, vocab_size (negative = untied classifier), seq_len; then fp32 arrays), whose
//     tensors are presented under Hugging Face LLaMA names and layout. llama2.c rotates
//     interleaved pairs (2i, 2i+1) in RoPE, HF rotates halves (i, i + d/2): q_proj and k_proj rows
//     are permuted within each head (HF's convert_llama_weights permute) so that the presented
//     weights compute the same model in HF's convention;
//   - a .gguf file (llama.cpp's format, io/gguf.h): llama.* metadata as the config, tensors
//     under HF names (io/gguf_names.h), q/k rows permuted as for llama2.c (the LLAMA architecture
//     stores Meta's interleaved order); F32/F16/BF16 tensors present as themselves, Q8_0 ones as
//     F32 (exact), other quantized types are listed but refuse to be read, naming the type.
// Tensors are read on demand, converted to fp32 (F32/F16/BF16), one at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace loftq {

class SafetensorsFile;
class GgufFile;

// Architecture facts from config.json (or derived from a llama2.c header). 0 = unknown.
struct ModelConfig {
    std::string model_type;     // "llama", "mistral", "qwen2", "gpt2", ...
    int n_layers = 0, hidden = 0, n_heads = 0, n_kv_heads = 0, intermediate = 0, vocab = 0;
    int max_position = 0;
    bool tie_word_embeddings = false;
    double rope_theta = 10000.0, rms_norm_eps = 1e-5;
    std::string torch_dtype;    // as in config.json, e.g. "bfloat16"
    nlohmann::json raw;         // the whole config.json (null when there was none)
};

enum class CheckpointKind : uint8_t { HFFolder, SafetensorsFile, Llama2c, Gguf };

struct TensorEntry {
    std::string name;               // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
    DType dtype = DType::Unknown;
    std::string dtype_str;          // as stored
    std::vector<int64_t> shape;
    int file = 0;                   // index into Checkpoint::files()
    const uint8_t* data = nullptr;  // mapped bytes in the source layout
    uint64_t nbytes = 0;
    int rope_permute_heads = 0;     // llama2.c / GGUF q/k: permute rows within this many heads on read
    int gguf_index = -1;            // GGUF: the tensor's index in GgufFile::tensors()
    uint64_t numel() const { uint64_t n = 1; for (auto d : shape) n *= uint64_t(d); return n; }
    bool is_matrix() const { return shape.size() == 2; }
};

class Checkpoint {
public:
    // Opens a folder, .safetensors or .bin; throws loftq::Error naming the file on any problem
    // (missing files, corrupt headers, shard index naming a missing shard or tensor, ...).
    static std::unique_ptr<Checkpoint> open(const std::string& path);
    ~Checkpoint();

    CheckpointKind kind() const { return kind_; }
    const std::string& path() const { return path_; }       // what was opened
    const std::string& dir() const { return dir_; }         // folder holding it
    const std::vector<std::string>& files() const { return files_; }  // data files (absolute)
    uint64_t size_on_disk() const;                           // sum of data files' sizes
    const ModelConfig& config() const { return config_; }
    bool has_config_json() const { return !config_.raw.is_null(); }
    const std::vector<TensorEntry>& tensors() const { return tensors_; }  // stable order
    const GgufFile* gguf() const { return gguf_.get(); }                  // the GGUF form, else null
    const TensorEntry* find(const std::string& name) const;
    // Tokenizer and generation files beside the model (tokenizer.json, tokenizer.model,
    // tokenizer_config.json, special_tokens_map.json, generation_config.json, vocab/merges,
    // tokenizer.bin for llama2.c), absolute paths.
    std::vector<std::string> aux_files() const;

    // fp32 values in HF layout (numel floats). Throws loftq::Error for non-float dtypes, and for
    // NaN/Inf values (naming the tensor and the first bad index) when check_finite.
    void read_f32(const TensorEntry& t, float* out, bool check_finite = true) const;
    std::vector<float> read_f32(const TensorEntry& t, bool check_finite = true) const;
    // The tensor's bytes in HF layout and source dtype (a copy; permuted for llama2.c q/k).
    std::vector<uint8_t> read_bytes(const TensorEntry& t) const;
    // Hints that the tensor's mapped pages are no longer needed (they are dropped from resident
    // memory; a later read maps them in again). Jobs call it after reading each tensor so that
    // memory stays bounded by the weights in flight, not the model size.
    void release(const TensorEntry& t) const;
    // A config.json for an HF export of this checkpoint: the source's, or one derived from the
    // llama2.c header or the GGUF metadata (LlamaForCausalLM / Qwen2ForCausalLM).
    nlohmann::json hf_config_json() const;

private:
    Checkpoint() = default;
    CheckpointKind kind_ = CheckpointKind::HFFolder;
    std::string path_, dir_;
    std::vector<std::string> files_;
    std::vector<std::unique_ptr<SafetensorsFile>> st_;  // safetensors forms
    std::unique_ptr<GgufFile> gguf_;                    // the GGUF form
    void* map_ = nullptr;                               // llama2.c mapping
    uint64_t map_size_ = 0;
    ModelConfig config_;
    std::vector<TensorEntry> tensors_;
    std::vector<std::pair<std::string, size_t>> index_;  // sorted name -> tensors_ index
    friend struct CheckpointLoader;
};

// Reads config.json (throws loftq::Error naming the file on bad JSON / wrong field types).
ModelConfig read_model_config(const std::string& config_json_path);

}  // namespace loftq
