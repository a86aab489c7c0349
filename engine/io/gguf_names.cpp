// gguf_names.cpp: see gguf_names.h.
#include "io/gguf_names.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "quant/ggml_types.h"

namespace loftq {

namespace {
// Per-layer tensors: llama.cpp suffix after "blk.N." <-> HF suffix after "model.layers.N.".
struct LayerName {
    const char* gguf;
    const char* hf;
};
constexpr LayerName kLayer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};
constexpr LayerName kGlobal[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// "<prefix><digits>.<rest>" -> (layer, rest), or layer -1.
std::pair<int, std::string_view> split_layer(std::string_view name, std::string_view prefix) {
    if (!name.starts_with(prefix)) return {-1, {}};
    name.remove_prefix(prefix.size());
    size_t k = 0;
    int layer = 0;
    while (k < name.size() && k < 6 && name[k] >= '0' && name[k] <= '9') layer = layer * 10 + (name[k++] - '0');
    if (k == 0 || k >= name.size() || name[k] != '.') return {-1, {}};
    return {layer, name.substr(k + 1)};
}
}  // namespace

std::string gguf_to_hf_name(const std::string& g) {
    for (const auto& n : kGlobal)
        if (g == n.gguf) return n.hf;
    auto [layer, rest] = split_layer(g, "blk.");
    if (layer < 0) return {};
    for (const auto& n : kLayer)
        if (rest == n.gguf) return "model.layers." + std::to_string(layer) + "." + n.hf;
    return {};
}

std::string hf_to_gguf_name(const std::string& h) {
    for (const auto& n : kGlobal)
        if (h == n.hf) return n.gguf;
    auto [layer, rest] = split_layer(h, "model.layers.");
    if (layer < 0) return {};
    for (const auto& n : kLayer)
        if (rest == n.hf) return "blk." + std::to_string(layer) + "." + n.gguf;
    return {};
}

namespace {
std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
    std::string out;
    size_t i = 0;
    for (size_t j; (j = s.find(from, i)) != std::string::npos; i = j + from.size()) out.append(s, i, j - i).append(to);
    return out.append(s, i);
}
}  // namespace

std::string spm_to_spaces(const std::string& piece) { return replace_all(piece, "\xE2\x96\x81", " "); }
std::string spaces_to_spm(const std::string& piece) { return replace_all(piece, " ", "\xE2\x96\x81"); }

std::string gguf_llama2c_tokenizer(const GgufFile& f) {
    const GgufValue* toks = f.find("tokenizer.ggml.tokens");
    const GgufValue* scores = f.find("tokenizer.ggml.scores");
    if (f.get_string("tokenizer.ggml.model", "") != "llama" || !toks || toks->strs.empty()) return {};
    if (f.get_int("tokenizer.ggml.unknown_token_id", 0) != 0 || f.get_int("tokenizer.ggml.bos_token_id", 1) != 1 ||
        f.get_int("tokenizer.ggml.eos_token_id", 2) != 2 || !f.get_bool("tokenizer.ggml.add_space_prefix", true))
        return {};
    const size_t n = toks->strs.size();
    std::vector<std::string> pieces(n);
    uint32_t max_len = 1;
    for (size_t i = 0; i < n; ++i) {
        pieces[i] = spm_to_spaces(toks->strs[i]);
        max_len = std::max<uint32_t>(max_len, uint32_t(pieces[i].size()));
    }
    std::string out;
    auto put = [&](const void* p, size_t k) { out.append(static_cast<const char*>(p), k); };
    put(&max_len, 4);
    for (size_t i = 0; i < n; ++i) {
        const float sc = scores && scores->nums.size() == n ? float(scores->nums[i]) : 0.f;
        const int32_t len = int32_t(pieces[i].size());
        put(&sc, 4);
        put(&len, 4);
        put(pieces[i].data(), pieces[i].size());
    }
    return out;
}

bool gguf_arch_interleaves_rope(const std::string& arch) { return arch == "llama"; }

ModelConfig gguf_model_config(const GgufFile& f) {
    const std::string arch = f.get_string("general.architecture", "");
    if (arch.empty()) throw Error(f.path(), "general.architecture", "missing: not a model file (no architecture)");
    if (arch != "llama" && arch != "qwen2")
        throw Error(f.path(), "general.architecture",
                    "architecture '" + arch + "' is not supported; LoftQ Studio reads LLaMA-family GGUF files (llama, qwen2)");
    auto need = [&](const std::string& k) {
        const int64_t v = f.get_int(arch + "." + k, -1);
        if (v <= 0 || v > (int64_t(1) << 30)) throw Error(f.path(), arch + "." + k, v < 0 ? "missing" : "out of range: " + std::to_string(v));
        return int(v);
    };
    ModelConfig c;
    c.model_type = arch;
    c.n_layers = need("block_count");
    c.hidden = need("embedding_length");
    c.intermediate = need("feed_forward_length");
    c.n_heads = need("attention.head_count");
    c.n_kv_heads = int(f.get_int(arch + ".attention.head_count_kv", c.n_heads));
    if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0)
        throw Error(f.path(), arch + ".attention.head_count_kv",
                    std::to_string(c.n_kv_heads) + " does not divide the " + std::to_string(c.n_heads) + " heads");
    if (c.hidden % c.n_heads != 0 || (c.hidden / c.n_heads) % 2 != 0)
        throw Error(f.path(), arch + ".embedding_length", "hidden size " + std::to_string(c.hidden) + " does not split into " +
                                                              std::to_string(c.n_heads) + " heads of even size");
    const int64_t rot = f.get_int(arch + ".rope.dimension_count", c.hidden / c.n_heads);
    if (rot != c.hidden / c.n_heads)
        throw Error(f.path(), arch + ".rope.dimension_count",
                    "partial rotary embeddings (" + std::to_string(rot) + " of " + std::to_string(c.hidden / c.n_heads) +
                        " per head) are not supported");
    const std::string scaling = f.get_string(arch + ".rope.scaling.type", "none");
    if (scaling != "none" && !scaling.empty())
        throw Error(f.path(), arch + ".rope.scaling.type", "RoPE scaling '" + scaling + "' is not supported");
    if (f.find_tensor("rope_freqs.weight"))
        throw Error(f.path(), "rope_freqs.weight", "per-frequency RoPE factors (Llama 3.1 style) are not supported");
    c.max_position = int(f.get_int(arch + ".context_length", 2048));
    c.rope_theta = f.get_float(arch + ".rope.freq_base", 10000.0);
    c.rms_norm_eps = f.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
    // vocabulary: the key, else the token table, else the embedding's rows
    int64_t vocab = f.get_int(arch + ".vocab_size", 0);
    if (vocab <= 0)
        if (const GgufValue* t = f.find("tokenizer.ggml.tokens")) vocab = int64_t(t->count);
    if (vocab <= 0)
        if (const GgufTensor* e = f.find_tensor("token_embd.weight"); e && e->ne.size() == 2) vocab = e->ne[1];
    if (vocab <= 0 || vocab > (int64_t(1) << 30)) throw Error(f.path(), "token_embd.weight", "cannot tell the vocabulary size");
    c.vocab = int(vocab);
    c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
    // the type most weights are stored in, as config.json's torch_dtype says it
    const GgufTensor* e = f.find_tensor("token_embd.weight");
    const GgmlType et = e ? GgmlType(e->type) : GgmlType::F32;
    c.torch_dtype = et == GgmlType::F16 ? "float16" : et == GgmlType::BF16 ? "bfloat16" : "float32";
    c.raw = nullptr;   // no config.json: Checkpoint::hf_config_json derives one
    return c;
}

}  // namespace loftq
