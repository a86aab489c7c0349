// llama_load.cpp: load_llama (llama.h) — reads a checkpoint into a LlamaCpu and sets up the
// frozen base and the adapters for the chosen start (InitKind):
//   Export  base = the stored weights (a LoftQ export's dequantized Q); A, B and each module's
//           scale from OUT/loftq_init (adapter_model.safetensors + adapter_config.json: r,
//           lora_alpha, rank_pattern, alpha_pattern as PEFT resolves them). A folder without
//           loftq_init (a plain checkpoint) gets QLoRA's init at LoadOptions::rank instead:
//           A ~ kaiming-uniform, B = 0, so training starts from the stored weights.
//   Loftq   base = Q of loftq_decompose (as loftq/job.cpp runs it: randomized SVD seeded by
//           weight_seed(seed, tensor name, 0)), B = B_T, A = A_T, each times sqrt(r / alpha)
//           so that (alpha / r) B A is the computed term (as export/hf.cpp stores them).
//   Qlora   base = deq(q(W)); Lora16 base = W; both A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
//           kaiming_uniform(a = sqrt(5))) from Rng(weight_seed(seed, tensor name, 0)), B = 0 —
//           the same draw export/hf.cpp writes for T = 0 weights.
// Weights are read straight into the model's base block (no second copy of the model).
// LoadOptions::keep_packed keeps the quantized sites as PackedSite (codes + scales) instead:
// Loftq / Qlora take the codes from the quantizer (the fp32 path stores exactly their
// dequantization); an HF export is requantized site by site with its weight's quantizer
// (loftq_metrics.json) and kept packed only if that reproduces every stored value bit for bit:
// absmax of table[c] * s is s (every nonzero block holds a +-1 code) and (table[c] * s) / s rounds
// back to table[c]'s interval, so q(deq(c, s)) = (c, s) for an F32 export; the first site off
// the grid (bf16 rounding, a 16-bit site) restarts the load with fp32 sites.
// Every failure is a loftq::Error naming the file and tensor.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "export/verify.h"
#include "core/units.h"
#include "core/rng.h"
#include "io/packed_reader.h"
#include "io/json_read.h"
#include "io/peft_adapter.h"
#include "io/safetensors.h"
#include "linalg/blas.h"
#include "loftq/decompose.h"
#include "loftq/name_regex.h"
#include "core/task_pool.h"
#include "loftq/job.h"
#include "loftq/plan.h"
#include "model/llama.h"
#include "model/llama_cpu.h"
#include "model/out_of_memory.h"
#include "quant/quantizer.h"

namespace fs = std::filesystem;

namespace loftq {

const char* lora_site_name(LoraSite s) {
    static const char* kNames[kLoraSites] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    return kNames[int(s)];
}

std::string lora_module_path(int layer, LoraSite s) {
    const bool attn = s == LoraSite::Q || s == LoraSite::K || s == LoraSite::V || s == LoraSite::O;
    return "model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") + lora_site_name(s);
}

namespace {

std::string json_string(const nlohmann::json& o, const char* key, const std::string& def) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : def;
}
double json_number(const nlohmann::json& o, const char* key, double def) {
    auto it = o.find(key);
    return it != o.end() && it->is_number() ? it->get<double>() : def;
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

std::string weight_name(int l, LoraSite s) { return lora_module_path(l, s) + ".weight"; }

// PEFT's get_pattern_key: the first pattern key K with re.match("(.*\.)?K$", module path).
const nlohmann::json* pattern_value(const nlohmann::json& acfg, const char* field, const std::string& module_path,
                                    const std::string& file) {
    auto it = acfg.find(field);
    if (it == acfg.end() || !it->is_object()) return nullptr;
    for (auto p = it->begin(); p != it->end(); ++p) {
        // PEFT's rule: the key matches the module path's end at a dot boundary (re.fullmatch).
        if (NameRegex("(.*\\.)?(?:" + p.key() + ")", file + ": " + field + " key").full_match(module_path)) return &p.value();
    }
    return nullptr;
}

// Architecture checks and the config, with q/k/v bias and tying decided by the tensors present.
LlamaConfig checked_config(const Checkpoint& ck) {
    const ModelConfig& mc = ck.config();
    const std::string where = ck.has_config_json() ? (fs::path(ck.dir()) / "config.json").string() : ck.path();
    static const std::set<std::string> kTypes = {"llama", "mistral", "qwen2"};
    if (mc.model_type.empty())
        throw Error(where, "", "no model_type: a config.json describing the model (LLaMA family) must sit beside the weights");
    if (!kTypes.count(mc.model_type))
        throw Error(where, "", "model_type '" + mc.model_type +
                                   "' is not a LLaMA-family decoder this trainer runs (llama, mistral, qwen2)");
    LlamaConfig c = llama_config_from(mc);
    const std::pair<int, const char*> sizes[] = {{c.dim, "hidden_size"}, {c.hidden, "intermediate_size"},
                                                 {c.n_layers, "num_hidden_layers"}, {c.n_heads, "num_attention_heads"},
                                                 {c.n_kv_heads, "num_key_value_heads"}, {c.vocab, "vocab_size"}};
    for (const auto& [v, name] : sizes)
        if (v <= 0) throw Error(where, "", std::string("config field '") + name + "' is missing or not positive");
    if (c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 || c.head_dim() % 2 != 0)
        throw Error(where, "", "hidden_size " + std::to_string(c.dim) + ", " + std::to_string(c.n_heads) + " heads, " +
                                   std::to_string(c.n_kv_heads) +
                                   " kv heads: heads must divide the width, kv heads the heads, and the head "
                                   "dimension must be even");
    if (mc.raw.is_object()) {
        const std::string act = json_string(mc.raw, "hidden_act", "silu");
        if (act != "silu") throw Error(where, "", "hidden_act '" + act + "' is not supported (SwiGLU needs silu)");
        const double hd = json_number(mc.raw, "head_dim", 0);
        if (hd != 0 && int(hd) != c.head_dim())
            throw Error(where, "", "head_dim " + std::to_string(int(hd)) + " differs from hidden_size / heads = " +
                                       std::to_string(c.head_dim()) + " (not supported)");
    }
    if (!c.rope_scaling.empty() && c.rope_scaling != "linear" && c.rope_scaling != "llama3")
        throw Error(where, "", "rope_scaling type '" + c.rope_scaling + "' is not supported (linear, llama3)");
    if (!std::isfinite(c.rope_theta) || c.rope_theta <= 0)
        throw Error(where, "", "rope_theta " + std::to_string(c.rope_theta) + " must be a positive number");
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0)
        throw Error(where, "", "rms_norm_eps " + std::to_string(c.norm_eps) + " must be a non-negative number");
    // The config against the tensors present, before anything is sized from it: a config that
    // claims 2^31 layers or a vocabulary of 2^31 would otherwise allocate until the OOM killer came.
    int layers_present = 0;
    for (const auto& t : ck.tensors()) layers_present = std::max(layers_present, layer_of(t.name) + 1);
    if (layers_present != c.n_layers)
        throw Error(where, "", "num_hidden_layers is " + std::to_string(c.n_layers) + " but the checkpoint holds tensors of " +
                                   std::to_string(layers_present) + " layers");
    if (const TensorEntry* e = ck.find("model.embed_tokens.weight"))
        if (e->shape != std::vector<int64_t>{c.vocab, c.dim})
            throw Error(ck.files()[size_t(e->file)], e->name,
                        "shape " + shape_str(e->shape) + " differs from the config's vocab_size x hidden_size [" +
                            std::to_string(c.vocab) + ", " + std::to_string(c.dim) + "]");
    c.qkv_bias = ck.find("model.layers.0.self_attn.q_proj.bias") != nullptr;
    c.tied_embeddings = mc.tie_word_embeddings || ck.find("lm_head.weight") == nullptr;
    return c;
}

// Every tensor of the checkpoint must be one this model uses: an ignored tensor (an o_proj bias,
// q_norm, an extra layer) would silently compute a different model.
void check_no_extra_tensors(const Checkpoint& ck, const LlamaConfig& c, bool packed) {
    std::set<std::string> known = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (int l = 0; l < c.n_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        known.insert(p + "input_layernorm.weight");
        known.insert(p + "post_attention_layernorm.weight");
        for (int s = 0; s < kLoraSites; ++s) known.insert(weight_name(l, LoraSite(s)));
        if (c.qkv_bias)
            for (const char* b : {"q_proj", "k_proj", "v_proj"}) known.insert(p + "self_attn." + b + ".bias");
    }
    for (const auto& t : ck.tensors()) {
        if (known.count(t.name)) continue;
        if (packed && is_packed_part(t.name)) continue;
        if (t.name.size() >= 19 && t.name.compare(t.name.size() - 19, 19, "rotary_emb.inv_freq") == 0) continue;
        throw Error(ck.files()[size_t(t.file)], t.name,
                    "not part of a LLaMA-family decoder with " + std::to_string(c.n_layers) +
                        " layers (this architecture variant is not supported)");
    }
}

void qlora_init(LoraSlot& sl, const std::string& tensor_name, uint64_t seed) {
    if (!sl.rank) return;
    Rng rng(weight_seed(seed, tensor_name, 0));
    const double bound = 1.0 / std::sqrt(double(sl.in));
    for (int64_t i = 0; i < int64_t(sl.rank) * sl.in; ++i) sl.A[i] = float((2.0 * rng.uniform() - 1.0) * bound);
    std::fill(sl.B, sl.B + sl.out * sl.rank, 0.f);
}

// loftq_init of an export: the adapter file and its config.
struct ExportAdapter {
    std::string path, config_path;
    std::unique_ptr<SafetensorsFile> file;
    nlohmann::json cfg;
    std::set<std::string> used;

    const TensorInfo* find(const std::string& key) {
        const TensorInfo* t = file->find(key);
        if (t) used.insert(key);
        return t;
    }
    void read(const TensorInfo& t, float* dst) const {
        if (!dtype_is_float_convertible(t.dtype))
            throw Error(path, t.name, "dtype " + t.dtype_str + " cannot be read as fp32");
        const size_t n = size_t(t.numel());
        to_f32(t.dtype, file->data(t), dst, n);
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite(dst[i]))
                throw Error(path, t.name, "non-finite value (NaN/Inf) at flat index " + std::to_string(i));
    }
};

std::unique_ptr<ExportAdapter> open_export_adapter(const std::string& model_dir) {
    const fs::path dir = fs::path(model_dir) / "loftq_init";
    const fs::path st = dir / "adapter_model.safetensors";
    std::error_code ec;
    if (!fs::is_regular_file(st, ec)) return nullptr;
    auto a = std::make_unique<ExportAdapter>();
    a->path = st.string();
    a->config_path = (dir / "adapter_config.json").string();
    a->file = SafetensorsFile::open(a->path);
    if (!fs::is_regular_file(a->config_path, ec))
        throw Error(a->config_path, "", "missing: a LoftQ export's adapter needs its adapter_config.json (r, lora_alpha)");
    a->cfg = read_json_file(a->config_path, "adapter config");
    if (!a->cfg.is_object() || !a->cfg.contains("r") || !a->cfg["r"].is_number_integer())
        throw Error(a->config_path, "", "needs an integer field 'r'");
    return a;
}

// Rank and scale of every site from the adapter (rank 0 where the adapter has no factors).
void ranks_from_adapter(ExportAdapter& a, const LlamaConfig& c, std::vector<int>& ranks, std::vector<float>& scales) {
    const int r_default = a.cfg["r"].get<int>();
    const double alpha_default = json_number(a.cfg, "lora_alpha", double(r_default));
    for (const char* unsupported : {"use_dora"})
        if (a.cfg.contains(unsupported) && a.cfg[unsupported].is_boolean() && a.cfg[unsupported].get<bool>())
            throw Error(a.config_path, "", std::string(unsupported) + " adapters are not supported");
    const bool rslora = a.cfg.contains("use_rslora") && a.cfg["use_rslora"].is_boolean() && a.cfg["use_rslora"].get<bool>();
    for (int l = 0; l < c.n_layers; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const size_t i = size_t(l) * kLoraSites + size_t(s);
            const std::string mp = lora_module_path(l, LoraSite(s));
            const std::string ka = peft_lora_key(mp, 'A'), kb = peft_lora_key(mp, 'B');
            const TensorInfo* ta = a.find(ka);
            const TensorInfo* tb = a.find(kb);
            ranks[i] = 0;
            scales[i] = 0.f;
            if (!ta && !tb) continue;
            if (!ta || !tb) throw Error(a.path, ta ? kb : ka, "missing (the other factor of the module is present)");
            const int64_t in = lora_site_in(c, LoraSite(s)), out = lora_site_out(c, LoraSite(s));
            if (ta->shape.size() != 2 || ta->shape[1] != in || ta->shape[0] <= 0)
                throw Error(a.path, ka, "shape " + shape_str(ta->shape) + ", expected [r, " + std::to_string(in) + "]");
            const int r = int(ta->shape[0]);
            if (tb->shape != std::vector<int64_t>{out, r})
                throw Error(a.path, kb, "shape " + shape_str(tb->shape) + ", expected [" + std::to_string(out) + ", " +
                                            std::to_string(r) + "] (lora_A has rank " + std::to_string(r) + ")");
            int r_cfg = r_default;
            if (const auto* v = pattern_value(a.cfg, "rank_pattern", mp, a.config_path)) {
                if (!v->is_number_integer()) throw Error(a.config_path, "", "rank_pattern value for " + mp + " is not an integer");
                r_cfg = v->get<int>();
            }
            if (r != r_cfg)
                throw Error(a.path, ka, "adapter rank " + std::to_string(r) + " does not match adapter_config.json (r = " +
                                            std::to_string(r_cfg) + " for " + mp + ")");
            double alpha = alpha_default;
            if (const auto* v = pattern_value(a.cfg, "alpha_pattern", mp, a.config_path)) {
                if (!v->is_number()) throw Error(a.config_path, "", "alpha_pattern value for " + mp + " is not a number");
                alpha = v->get<double>();
            }
            ranks[i] = r;
            scales[i] = float(rslora ? alpha / std::sqrt(double(r)) : alpha / double(r));
        }
    for (const auto& t : a.file->tensors())
        if (!a.used.count(t.name))
            throw Error(a.path, t.name, "adapts a module other than the q/k/v/o/gate/up/down projections (not supported)");
}

// keep_packed on an HF export: a stored Q that is not the dequantization of its requantized
// codes (caught by load_llama, which reloads with fp32 sites).
struct NotOnGrid {};

// The quantizer and block of each quantized weight of an HF LoftQ export, from
// DIR/loftq_metrics.json ("weights": [{name, quant, block}, ...]); empty when the file is absent
// or unreadable (the caller then tries LoadOptions::quant / block).
std::map<std::string, std::pair<QuantKind, int>> export_quantizers(const std::string& dir) {
    std::map<std::string, std::pair<QuantKind, int>> r;
    const fs::path p = fs::path(dir) / "loftq_metrics.json";
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return r;
    try {
        const nlohmann::json j = read_json_file(p.string(), "metrics");
        auto ws = j.find("weights");
        if (ws == j.end() || !ws->is_array()) return r;
        for (const auto& w : *ws) {
            const auto k = quant_kind_from_name(json_string(w, "quant", ""));
            const int block = int(json_number(w, "block", 0));
            const std::string name = json_string(w, "name", "");
            if (k && block > 0 && !name.empty()) r[name] = {*k, block};
        }
    } catch (const std::exception&) {
        r.clear();
    }
    return r;
}

PackedSite make_packed_site(QuantKind kind, int block, const uint8_t* codes, size_t n, std::vector<float> scales) {
    PackedSite ps;
    ps.kind = kind;
    ps.block = block;
    const int bits = quant_format(kind).bits;
    ps.codes.resize(packed_size(n, bits));
    pack_codes(codes, n, bits, ps.codes.data());
    ps.scales = std::move(scales);
    return ps;
}

}  // namespace

LlamaConfig llama_config_from(const ModelConfig& m) {
    LlamaConfig c;
    c.dim = m.hidden;
    c.hidden = m.intermediate;
    c.n_layers = m.n_layers;
    c.n_heads = m.n_heads;
    c.n_kv_heads = m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads;
    c.vocab = m.vocab;
    c.max_seq = m.max_position > 0 ? m.max_position : 2048;
    c.rope_theta = float(m.rope_theta);
    c.norm_eps = float(m.rms_norm_eps);
    c.tied_embeddings = m.tie_word_embeddings;
    c.qkv_bias = m.model_type == "qwen2";
    if (m.raw.is_object()) {
        auto ab = m.raw.find("attention_bias");
        if (ab != m.raw.end() && ab->is_boolean() && ab->get<bool>()) c.qkv_bias = true;
        auto rs = m.raw.find("rope_scaling");
        if (rs != m.raw.end() && rs->is_object()) {
            std::string type = json_string(*rs, "rope_type", json_string(*rs, "type", ""));
            c.rope_scaling = type == "default" ? "" : type;
            c.rope_factor = json_number(*rs, "factor", 1.0);
            c.rope_low_freq_factor = json_number(*rs, "low_freq_factor", 1.0);
            c.rope_high_freq_factor = json_number(*rs, "high_freq_factor", 4.0);
            c.rope_original_max = int(json_number(*rs, "original_max_position_embeddings", 8192));
        }
    }
    return c;
}

namespace {

// pack_export: with keep_packed on an HF export, try packed sites (NotOnGrid when impossible).
std::unique_ptr<LlamaModel> load_impl(const LoadOptions& opt, bool pack_export) {
    auto ck = Checkpoint::open(opt.model);
    if (opt.init == InitKind::Export && opt.verify && ck->kind() != CheckpointKind::Llama2c && ck->kind() != CheckpointKind::Gguf)
        require_verified(verify_export(ck->dir()));   // flipped bytes are refused before any is read
    const LlamaConfig cfg = checked_config(*ck);
    const bool packed = is_packed_checkpoint(*ck);
    if (packed && opt.init != InitKind::Export)
        throw Error(ck->path(), "", "a packed LoftQ export is already quantized: load it as an export (start "
                                    "'export'), or start LoftQ, QLoRA or 16-bit LoRA from the original checkpoint");
    check_no_extra_tensors(*ck, cfg, packed);
    const int L = cfg.n_layers;
    const int64_t C = cfg.dim, KV = cfg.kv_dim(), V = cfg.vocab;

    if (opt.rank < 0) throw Error("load: LoRA rank must be >= 0, got " + std::to_string(opt.rank));
    if (opt.lora_alpha < 0) throw Error("load: lora_alpha must be >= 0 (0 = rank)");
    const int K = L * kLoraSites;
    // Per-site settings of a quantized start: the uniform ones of LoadOptions, or a plan's (an
    // empty optional = a projection the plan keeps at W, with no adapter).
    std::vector<std::optional<WeightSettings>> site_ws(static_cast<size_t>(K));
    const bool quantized_start = opt.init == InitKind::Loftq || opt.init == InitKind::Qlora;
    if (quantized_start && opt.plan) {
        const ResolvedPlan rp = resolve_plan(*opt.plan, tensor_metas(*ck));
        std::map<std::string, const WeightPlan*> by_name;
        for (const WeightPlan& w : rp.weights) by_name[w.name] = &w;
        for (int i = 0; i < K; ++i) {
            auto it = by_name.find(weight_name(i / kLoraSites, LoraSite(i % kLoraSites)));
            if (it == by_name.end()) continue;
            site_ws[size_t(i)] = it->second->s;
            by_name.erase(it);
        }
        if (!by_name.empty())
            throw Error(ck->path(), by_name.begin()->first,
                        "the plan quantizes this tensor, but the model quantizes only the q/k/v/o/gate/up/down "
                        "projections (keep it in the plan to evaluate or fine-tune)");
    } else if (quantized_start) {
        const auto quant = quant_kind_from_name(opt.quant);
        if (!quant) throw Error("load: unknown quantizer '" + opt.quant + "' (nf4, nf3, nf2, int2, int3, int4, int8)");
        if (opt.block <= 0) throw Error("load: quantizer block must be positive, got " + std::to_string(opt.block));
        if (opt.iters < 0) throw Error("load: LoftQ steps must be >= 0, got " + std::to_string(opt.iters));
        WeightSettings ws;
        ws.quant = *quant;
        ws.block = opt.block;
        ws.rank = opt.rank;
        ws.iters = opt.iters;
        ws.svd = SvdMethod::Randomized;
        for (auto& w : site_ws) w = ws;
    }
    const uint64_t seed = opt.plan && quantized_start ? opt.plan->seed : opt.seed;
    const double lora_alpha = opt.plan && quantized_start ? opt.plan->lora_alpha.value_or(0.0) : opt.lora_alpha;

    // Ranks and scales per site.
    std::unique_ptr<ExportAdapter> adapter;
    if (opt.init == InitKind::Export) adapter = open_export_adapter(ck->dir());
    std::vector<int> ranks(size_t(L) * kLoraSites, 0);
    std::vector<float> scales(ranks.size(), 0.f);
    if (adapter) {
        ranks_from_adapter(*adapter, cfg, ranks, scales);
    } else {
        for (int l = 0; l < L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                const size_t i = size_t(l) * kLoraSites + size_t(s);
                const int64_t in = lora_site_in(cfg, LoraSite(s)), out = lora_site_out(cfg, LoraSite(s));
                const int want = !quantized_start ? opt.rank : site_ws[i] ? site_ws[i]->rank : 0;
                const int r = int(std::min<int64_t>(want, std::min(in, out)));
                const double alpha = lora_alpha > 0 ? lora_alpha : double(r);
                ranks[i] = r;
                scales[i] = r ? float(alpha / double(r)) : 0.f;
            }
    }
    // A packed export whose seven projections are all quantized keeps them packed in memory
    // (k bits + 32/block per weight, dequantized per use); otherwise every site is fp32.
    std::unique_ptr<PackedReader> preader;
    bool keep_packed = false;
    if (packed) {
        preader = PackedReader::open(ck->dir());
        keep_packed = true;
        for (int l = 0; l < L && keep_packed; ++l)
            for (int s = 0; s < kLoraSites; ++s)
                if (!preader->weight(weight_name(l, LoraSite(s)))) keep_packed = false;
    } else if (opt.keep_packed && quantized_start) {
        keep_packed = std::all_of(site_ws.begin(), site_ws.end(), [](const auto& w) { return w.has_value(); });
    } else if (pack_export && opt.init == InitKind::Export) {
        keep_packed = true;  // requantized site by site below; NotOnGrid falls back to fp32
    }
    std::unique_ptr<LlamaCpu> m;
    try {
        m = std::make_unique<LlamaCpu>(cfg, ranks, scales, opt.threads, keep_packed);
    } catch (const std::bad_alloc&) {
        // One block holds every fp32 tensor: say how big the model is and which tensor is largest.
        double bytes = 0;
        const TensorEntry* largest = nullptr;
        for (const auto& t : ck->tensors()) {
            bytes += 4.0 * double(t.numel());
            if (!largest || t.numel() > largest->numel()) largest = &t;
        }
        const std::string what = "about " + human_bytes(bytes) + " for the model's fp32 weights";
        if (!largest) throw Error(ck->path(), "", out_of_memory_text(what));
        throw Error(ck->files()[size_t(largest->file)], largest->name,
                    out_of_memory_text(what + ", the largest this tensor: " + fp32_size_text(largest->shape)));
    }
    std::map<std::string, std::pair<QuantKind, int>> export_quant;
    if (keep_packed && !packed && opt.init == InitKind::Export) export_quant = export_quantizers(ck->dir());

    // Reads one tensor into dst after checking presence and shape; read_f32 rejects NaN/Inf
    // naming the tensor.
    auto load = [&](const std::string& name, float* dst, const std::vector<int64_t>& shape) {
        if (opt.cancel) opt.cancel->throw_if_cancelled();
        const TensorEntry* t = ck->find(name);
        if (!t) throw Error(ck->path(), name, "missing from the checkpoint");
        if (t->shape != shape)
            throw Error(ck->files()[size_t(t->file)], name,
                        "shape " + shape_str(t->shape) + " does not match the config (expected " + shape_str(shape) + ")");
        try {
            ck->read_f32(*t, dst, true);
        } catch (...) {
            rethrow_naming_size(ck->files()[size_t(t->file)], name, shape);
        }
        ck->release(*t);
    };
    load("model.embed_tokens.weight", m->embed(), {V, C});
    for (int l = 0; l < L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LlamaLayerWeights& w = m->layer(l);
        load(p + "input_layernorm.weight", w.attn_norm, {C});
        load(p + "post_attention_layernorm.weight", w.ffn_norm, {C});
        if (cfg.qkv_bias) {
            load(p + "self_attn.q_proj.bias", w.bq, {C});
            load(p + "self_attn.k_proj.bias", w.bk, {KV});
            load(p + "self_attn.v_proj.bias", w.bv, {KV});
        }
    }
    load("model.norm.weight", m->final_norm(), {C});
    if (!cfg.tied_embeddings) load("lm_head.weight", m->lm_head(), {V, C});

    // The seven targets of every layer: into dst (out x in fp32), or, for a packed export kept
    // packed, straight into the model's PackedSite (then false is returned and dst is untouched).
    auto load_target = [&](int l, LoraSite s, float* dst) -> bool {
        const std::string name = weight_name(l, s);
        try {
            const PackedWeight* pw = preader ? preader->weight(name) : nullptr;
            if (pw && (pw->rows != lora_site_out(cfg, s) || pw->cols != lora_site_in(cfg, s)))
                throw Error(preader->dir(), name, "packed shape does not match the config");
            if (pw && keep_packed) {
                const std::vector<uint8_t> codes = preader->codes(*pw);   // validated: each below the level count
                // scales: double-quantized ones decoded
                m->set_packed_site(l, s, make_packed_site(pw->quant, pw->block, codes.data(), codes.size(), preader->scales(*pw)));
                return false;
            } else if (pw) {
                const std::vector<float> q = preader->dequantize(*pw);
                std::memcpy(dst, q.data(), q.size() * sizeof(float));
            } else {
                load(name, dst, {lora_site_out(cfg, s), lora_site_in(cfg, s)});
            }
            return true;
        } catch (...) {   // the packed reader's codes and dequantized copy are per tensor too
            rethrow_naming_size(preader ? preader->dir() : opt.model, name, {lora_site_out(cfg, s), lora_site_in(cfg, s)});
        }
    };
    const bool packed_sites = m->packed_sites();
    switch (opt.init) {
        case InitKind::Export:
        case InitKind::Lora16: {
            std::vector<float> tmp, back;
            std::vector<uint8_t> codes;
            for (int i = 0; i < K; ++i) {
                const int l = i / kLoraSites;
                const LoraSite s = LoraSite(i % kLoraSites);
                const size_t n = size_t(lora_site_out(cfg, s) * lora_site_in(cfg, s));
                try {   // requantizing an export's site takes three more copies of it (codes, scales, check)
                    if (packed_sites) tmp.resize(n);
                    float* dst = packed_sites ? tmp.data() : m->site_weight(l, s);
                    if (load_target(l, s, dst) && packed_sites) {
                        // keep_packed on an HF export: requantize and keep the codes only when they
                        // give back the stored Q bit for bit.
                        auto it = export_quant.find(weight_name(l, s));
                        std::optional<QuantKind> kind = quant_kind_from_name(opt.quant);
                        int block = opt.block;
                        if (it != export_quant.end()) { kind = it->second.first; block = it->second.second; }
                        if (!kind || block <= 0) throw NotOnGrid{};
                        const QuantFormat& f = quant_format(*kind);
                        std::vector<float> sc(num_blocks(n, block));
                        codes.resize(n);
                        back.resize(n);
                        quantize(f, dst, n, block, codes.data(), sc.data(), m->threads());
                        dequantize(f, codes.data(), sc.data(), n, block, back.data(), m->threads());
                        if (std::memcmp(back.data(), dst, n * sizeof(float)) != 0) throw NotOnGrid{};
                        m->set_packed_site(l, s, make_packed_site(*kind, block, codes.data(), n, std::move(sc)));
                    }
                    LoraSlot& sl = m->slot(l, s);
                    if (!sl.rank) continue;
                    if (adapter) {
                        const std::string mp = lora_module_path(l, s);
                        adapter->read(*adapter->file->find(peft_lora_key(mp, 'A')), sl.A);
                        adapter->read(*adapter->file->find(peft_lora_key(mp, 'B')), sl.B);
                    } else {
                        qlora_init(sl, weight_name(l, s), opt.seed);
                    }
                } catch (const NotOnGrid&) {
                    throw;
                } catch (...) {
                    rethrow_naming_size(opt.model, weight_name(l, s), {lora_site_out(cfg, s), lora_site_in(cfg, s)});
                }
            }
            break;
        }
        case InitKind::Qlora: {
            std::vector<float> tmp;
            std::vector<uint8_t> codes;
            for (int i = 0; i < K; ++i) {
                const int l = i / kLoraSites;
                const LoraSite s = LoraSite(i % kLoraSites);
                LoraSlot& sl = m->slot(l, s);
                const size_t n = size_t(sl.in * sl.out);
                const std::optional<WeightSettings>& ws = site_ws[size_t(i)];
                try {   // q(W) takes a second copy of the site (and its codes when kept packed)
                    if (!ws) {  // kept by the plan: W, no adapter
                        load_target(l, s, m->site_weight(l, s));
                        continue;
                    }
                    const QuantFormat& f = quant_format(ws->quant);
                    tmp.resize(n);
                    if (packed_sites) {  // the codes of q(W); their dequantization is the fp32 path's base
                        load_target(l, s, tmp.data());
                        std::vector<float> sc(num_blocks(n, ws->block));
                        codes.resize(n);
                        quantize(f, tmp.data(), n, ws->block, codes.data(), sc.data(), m->threads());
                        m->set_packed_site(l, s, make_packed_site(ws->quant, ws->block, codes.data(), n, std::move(sc)));
                    } else {
                        load_target(l, s, m->site_weight(l, s));
                        quantize_dequantize(f, m->site_weight(l, s), n, ws->block, tmp.data(), nullptr, nullptr, m->threads());
                        std::memcpy(m->site_weight(l, s), tmp.data(), n * sizeof(float));
                    }
                    qlora_init(sl, weight_name(l, s), seed);
                } catch (...) {
                    rethrow_naming_size(opt.model, weight_name(l, s), {sl.out, sl.in});
                }
            }
            break;
        }
        case InitKind::Loftq: {
            // The job's scheduling (core/task_pool.h): min(threads, K) workers, one weight each at
            // a time; BLAS at one thread so results are bit-identical for any thread count.
            const int threads = m->threads();
            const int workers = std::max(1, std::min(threads, K));
            const int inner = std::max(1, threads / workers);
            SingleThreadedBlas single_blas;  // LAPACK steps single-threaded: identical results for any thread count (linalg/blas.h)
            std::vector<std::vector<float>> own(static_cast<size_t>(workers));  // packed sites: each worker's fp32 copy of W
            run_tasks(size_t(K), workers, opt.cancel, [&](int worker, size_t task) {
                const int i = int(task);
                const int l = i / kLoraSites;
                const LoraSite s = LoraSite(i % kLoraSites);
                const std::string name = weight_name(l, s);
                try {
                    LoraSlot& sl = m->slot(l, s);
                    if (packed_sites) own[size_t(worker)].resize(size_t(sl.out * sl.in));
                    float* W = packed_sites ? own[size_t(worker)].data() : m->site_weight(l, s);
                    if (!site_ws[size_t(i)]) {  // kept by the plan: W, no adapter
                        load_target(l, s, m->site_weight(l, s));
                        return;
                    }
                    load_target(l, s, W);
                    WeightSettings ws = *site_ws[size_t(i)];
                    if (!sl.rank) ws.iters = 0;  // rank 0: quantization only
                    // As the quantize job runs a plan: same seed, oversampling and power iterations.
                    SvdOptions so;
                    so.method = ws.svd;
                    if (opt.plan) {
                        so.oversample = opt.plan->oversample;
                        so.power_iters = opt.plan->power_iters;
                    }
                    so.seed = weight_seed(seed, name, 0);
                    so.threads = inner;
                    Decomposition d = loftq_decompose(W, sl.out, sl.in, ws, so, inner);
                    if (packed_sites)  // Q_T = deq(codes, scales) of the same quantizer call
                        m->set_packed_site(l, s, make_packed_site(ws.quant, ws.block, d.codes.data(), d.codes.size(),
                                                                  std::move(d.scales)));
                    else
                        std::memcpy(W, d.Q.data(), d.Q.size() * sizeof(float));
                    if (!sl.rank) return;
                    if (d.lr.B.cols == 0) {  // T = 0: QLoRA's start
                        qlora_init(sl, name, seed);
                    } else if (d.lr.B.cols == sl.rank && d.lr.A.rows == sl.rank) {
                        // scale s = alpha / r: store B, A times 1/sqrt(s) so that s B' A' = B A.
                        const float k = float(1.0 / std::sqrt(double(sl.scale)));
                        for (size_t j = 0; j < d.lr.A.size(); ++j) sl.A[j] = d.lr.A.buf[j] * k;
                        for (size_t j = 0; j < d.lr.B.size(); ++j) sl.B[j] = d.lr.B.buf[j] * k;
                    } else {
                        throw Error("", name, "LoftQ returned rank " + std::to_string(d.lr.B.cols) + ", expected " +
                                                  std::to_string(sl.rank));
                    }
                } catch (...) {   // the decomposition holds several copies of the site (W, residual, Q, SVD factors)
                    rethrow_naming_size(opt.model, name, {lora_site_out(cfg, s), lora_site_in(cfg, s)});
                }
            });
            if (opt.cancel) opt.cancel->throw_if_cancelled();   // run_tasks stops quietly on a cancel
            break;
        }
    }
    m->set_threads(opt.threads);
    return m;
}

}  // namespace

bool is_loftq_export(const std::string& model) {
    std::error_code ec;
    if (fs::is_regular_file(fs::path(model) / "loftq_init" / "adapter_model.safetensors", ec)) return true;
    try {
        return is_packed_checkpoint(*Checkpoint::open(model));
    } catch (const std::exception&) {
        return false;   // not a checkpoint at all: the loader says why when it is used
    }
}

std::unique_ptr<LlamaModel> load_llama(const LoadOptions& opt) {
    try {
        return load_impl(opt, opt.keep_packed);
    } catch (const NotOnGrid&) {
        LoadOptions again = opt;
        again.verify = false;          // the first attempt read the export against its checksums
        return load_impl(again, false);  // the export's Q is not on its quantizer's grid: fp32 sites
    }
}

}  // namespace loftq
