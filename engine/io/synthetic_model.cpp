// synthetic_model.cpp: see synthetic_model.h.
#include "io/synthetic_model.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "io/sharded_writer.h"

namespace loftq {

// m x n weight: sum_k s_k u_k v_k^T (s_k ~ k^-0.8, k < K) + noise, a few outlier input columns.
// Scaled so entries are ~ 1/sqrt(n), as in an initialised-then-trained linear layer.
static std::vector<float> projection(int64_t m, int64_t n, Rng& rng) {
    const int K = int(std::min<int64_t>(std::min(m, n), 24));
    std::vector<float> w(size_t(m * n), 0.f);
    std::vector<float> u(static_cast<size_t>(m)), v(static_cast<size_t>(n));
    const double base = 1.0 / std::sqrt(double(n));
    for (int k = 0; k < K; ++k) {
        double s = 2.5 * base * std::sqrt(double(std::min(m, n))) * std::pow(double(k + 1), -0.8);
        for (auto& x : u) x = float(rng.normal() / std::sqrt(double(m)));
        for (auto& x : v) x = float(rng.normal() / std::sqrt(double(n)) * s);
        for (int64_t i = 0; i < m; ++i) {
            float ui = u[size_t(i)];
            float* row = &w[size_t(i * n)];
            for (int64_t j = 0; j < n; ++j) row[j] += ui * v[size_t(j)];
        }
    }
    for (auto& x : w) x += float(0.5 * base * rng.normal());
    // Outlier input features: a handful of columns several times larger.
    int outliers = std::max(1, int(n / 128));
    for (int o = 0; o < outliers; ++o) {
        int64_t c = int64_t(rng.next() % uint64_t(n));
        for (int64_t i = 0; i < m; ++i) w[size_t(i * n + c)] *= 6.f;
    }
    return w;
}

std::vector<float> synthetic_projection(int64_t rows, int64_t cols, uint64_t seed) {
    Rng rng(seed);
    return projection(rows, cols, rng);
}

void write_synthetic_model(const std::string& dir, const SyntheticSpec& sp) {
    if (sp.hidden % sp.heads != 0 || sp.heads % sp.kv_heads != 0)
        throw Error(dir, "", "synthetic model: hidden must divide by heads and heads by kv_heads");
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    const int64_t H = sp.hidden, I = sp.intermediate, V = sp.vocab, hd = H / sp.heads, KV = hd * sp.kv_heads;

    struct T { std::string name; std::vector<int64_t> shape; int kind; };  // kind 0 proj, 1 norm, 2 embed
    std::vector<T> ts;
    ts.push_back({"model.embed_tokens.weight", {V, H}, 2});
    for (int l = 0; l < sp.layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        ts.push_back({p + "input_layernorm.weight", {H}, 1});
        ts.push_back({p + "self_attn.q_proj.weight", {H, H}, 0});
        ts.push_back({p + "self_attn.k_proj.weight", {KV, H}, 0});
        ts.push_back({p + "self_attn.v_proj.weight", {KV, H}, 0});
        ts.push_back({p + "self_attn.o_proj.weight", {H, H}, 0});
        ts.push_back({p + "post_attention_layernorm.weight", {H}, 1});
        ts.push_back({p + "mlp.gate_proj.weight", {I, H}, 0});
        ts.push_back({p + "mlp.up_proj.weight", {I, H}, 0});
        ts.push_back({p + "mlp.down_proj.weight", {H, I}, 0});
    }
    ts.push_back({"model.norm.weight", {H}, 1});
    if (!sp.tie_embeddings) ts.push_back({"lm_head.weight", {V, H}, 2});

    std::vector<OutTensor> layout;
    const size_t es = dtype_size(sp.dtype);
    for (auto& t : ts) {
        uint64_t n = 1;
        for (auto d : t.shape) n *= uint64_t(d);
        layout.push_back({t.name, sp.dtype, "", t.shape, n * es});
    }
    StagedOutput staged(dir);
    ShardedWriter writer(dir, "model", layout, sp.max_shard_bytes, {{"format", "pt"}});
    Rng rng(sp.seed);
    std::vector<uint8_t> bytes;
    for (auto& t : ts) {
        std::vector<float> v;
        if (t.kind == 0) {
            v = projection(t.shape[0], t.shape[1], rng);
        } else if (t.kind == 1) {
            v.resize(size_t(t.shape[0]));
            for (auto& x : v) x = float(1.0 + 0.1 * rng.normal());
        } else {
            v.resize(size_t(t.shape[0] * t.shape[1]));
            for (auto& x : v) x = float(0.02 * rng.normal());
        }
        bytes.resize(v.size() * es);
        from_f32(sp.dtype, v.data(), bytes.data(), v.size());
        writer.write(t.name, bytes.data(), bytes.size());
    }
    writer.finish();

    const char* tdt = sp.dtype == DType::BF16 ? "bfloat16" : sp.dtype == DType::F16 ? "float16" : "float32";
    nlohmann::ordered_json cfg = {
        {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", H},
        {"intermediate_size", I}, {"num_hidden_layers", sp.layers}, {"num_attention_heads", sp.heads},
        {"num_key_value_heads", sp.kv_heads}, {"vocab_size", V}, {"max_position_embeddings", 512},
        {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"hidden_act", "silu"},
        {"tie_word_embeddings", sp.tie_embeddings}, {"torch_dtype", tdt}, {"bos_token_id", 1}, {"eos_token_id", 2},
        {"initializer_range", 0.02}, {"attention_bias", false}, {"use_cache", true}};
    writer.commit(staged);
    staged.write("config.json", cfg.dump(2) + "\n");
    staged.write("generation_config.json", nlohmann::ordered_json({{"bos_token_id", 1}, {"eos_token_id", 2}}).dump(2) + "\n");
    staged.write("tokenizer_config.json",
                 nlohmann::ordered_json({{"model_max_length", 512}, {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}}).dump(2) + "\n");
    staged.commit();
}

}  // namespace loftq
