// checkpoint.cpp: Checkpoint::open over Hugging Face folders (single or sharded safetensors),
// lone .safetensors files and llama2.c legacy (version 0) .bin files, plus config.json parsing.
// Leaves out: the safetensors format itself (safetensors.cpp), writing of any kind, PyTorch
// pickles (pytorch_model.bin) and llama2.c's versioned exports (magic "ak42").
#include "io/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "io/json_read.h"
#include "io/safetensors.h"
#include "quant/ggml_types.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {

nlohmann::json parse_json_file(const std::string& path) { return read_json_file(path); }

// Model types whose transformers config class defaults tie_word_embeddings to false; the base
// PretrainedConfig (GPT-2, Gemma, ...) defaults it to true.
bool untied_by_default(const std::string& model_type) {
    static const std::set<std::string> kUntied = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3",
                                                  "qwen3_moe", "phi3", "olmo", "olmo2", "internlm2", "granite",
                                                  "deepseek_v2", "deepseek_v3", "starcoder2"};
    return kUntied.count(model_type) != 0;
}

// Field readers for config.json: the first present, non-null key among `keys` wins; a present
// value of the wrong type is an error naming the file and the field.
struct ConfigReader {
    const std::string& path;
    const nlohmann::json& j;

    const nlohmann::json* get(std::initializer_list<const char*> keys, std::string* which) const {
        for (const char* k : keys) {
            auto it = j.find(k);
            if (it != j.end() && !it->is_null()) {
                if (which) *which = k;
                return &*it;
            }
        }
        return nullptr;
    }
    bool integer(std::initializer_list<const char*> keys, int& out) const {
        std::string k;
        const auto* v = get(keys, &k);
        if (!v) return false;
        if (v->is_number_integer()) {
            int64_t x = v->get<int64_t>();
            if (x < INT32_MIN || x > INT32_MAX) throw Error(path, "", "field '" + k + "' is out of range: " + v->dump());
            out = int(x);
            return true;
        }
        if (v->is_number_float()) {
            double d = v->get<double>();
            if (d == std::floor(d) && std::fabs(d) < 2147483647.0) { out = int(d); return true; }
        }
        throw Error(path, "", "field '" + k + "' must be an integer, got " + std::string(v->type_name()) + " " + v->dump());
    }
    bool number(std::initializer_list<const char*> keys, double& out) const {
        std::string k;
        const auto* v = get(keys, &k);
        if (!v) return false;
        if (!v->is_number()) throw Error(path, "", "field '" + k + "' must be a number, got " + std::string(v->type_name()));
        out = v->get<double>();
        return true;
    }
    bool boolean(std::initializer_list<const char*> keys, bool& out) const {
        std::string k;
        const auto* v = get(keys, &k);
        if (!v) return false;
        if (!v->is_boolean()) throw Error(path, "", "field '" + k + "' must be true or false, got " + std::string(v->type_name()));
        out = v->get<bool>();
        return true;
    }
    bool string(std::initializer_list<const char*> keys, std::string& out) const {
        std::string k;
        const auto* v = get(keys, &k);
        if (!v) return false;
        if (!v->is_string()) throw Error(path, "", "field '" + k + "' must be a string, got " + std::string(v->type_name()));
        out = v->get<std::string>();
        return true;
    }
};

// llama2.c legacy header: 7 little-endian int32.
struct Llama2cHeader {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared() const { return vocab_size > 0; }
    int64_t vocab() const { return vocab_size < 0 ? -int64_t(vocab_size) : int64_t(vocab_size); }
    int64_t head_dim() const { return dim / n_heads; }
    int64_t kv_dim() const { return head_dim() * n_kv_heads; }
    std::string describe() const {
        return "dim=" + std::to_string(dim) + ", hidden_dim=" + std::to_string(hidden_dim) +
               ", n_layers=" + std::to_string(n_layers) + ", n_heads=" + std::to_string(n_heads) +
               ", n_kv_heads=" + std::to_string(n_kv_heads) + ", vocab_size=" + std::to_string(vocab_size) +
               ", seq_len=" + std::to_string(seq_len);
    }
};

}  // namespace

// Builds a Checkpoint; a friend so it can fill the private fields.
struct CheckpointLoader {
    static void open_safetensors_files(Checkpoint& c, const std::vector<std::string>& files);
    static void open_sharded(Checkpoint& c, const std::string& index_path);
    static void open_llama2c(Checkpoint& c, const std::string& bin_path);
    static void open_gguf(Checkpoint& c, const std::string& path);
    static void build_index(Checkpoint& c);
    static void read_config_beside(Checkpoint& c) {
        std::string cfg = (fs::path(c.dir_) / "config.json").string();
        std::error_code ec;
        if (fs::is_regular_file(cfg, ec)) c.config_ = read_model_config(cfg);
    }
};

void CheckpointLoader::open_safetensors_files(Checkpoint& c, const std::vector<std::string>& files) {
    for (const auto& f : files) {
        int fi = int(c.files_.size());
        c.files_.push_back(f);
        c.st_.push_back(SafetensorsFile::open(f));
        for (const auto& t : c.st_.back()->tensors()) {
            TensorEntry e;
            e.name = t.name;
            e.dtype = t.dtype;
            e.dtype_str = t.dtype_str;
            e.shape = t.shape;
            e.file = fi;
            e.data = c.st_.back()->data(t);
            e.nbytes = t.nbytes();
            c.tensors_.push_back(std::move(e));
        }
    }
}

void CheckpointLoader::open_sharded(Checkpoint& c, const std::string& index_path) {
    nlohmann::json idx = parse_json_file(index_path);
    if (!idx.is_object()) throw Error(index_path, "", "expected a JSON object");
    auto wm = idx.find("weight_map");
    if (wm == idx.end() || !wm->is_object())
        throw Error(index_path, "", "missing 'weight_map' object (tensor name -> shard file)");
    // Shards in sorted order (model-00001-of-0000N first); each opened once.
    std::map<std::string, std::string> first_tensor;  // shard -> a tensor naming it (for messages)
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string())
            throw Error(index_path, it.key(), "weight_map value must be a shard file name, got " +
                                                  std::string(it.value().type_name()));
        std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
            throw Error(index_path, it.key(), "weight_map names an invalid shard file '" + shard + "'");
        first_tensor.emplace(shard, it.key());
    }
    std::map<std::string, int> shard_file;
    for (const auto& [shard, tensor] : first_tensor) {
        std::string p = (fs::path(c.dir_) / shard).string();
        std::error_code ec;
        if (!fs::is_regular_file(p, ec))
            throw Error(index_path, tensor, "shard file " + p + " does not exist");
        shard_file[shard] = int(c.files_.size());
        c.files_.push_back(p);
        c.st_.push_back(SafetensorsFile::open(p));
    }
    // Every tensor of the index must be in its shard; shard tensors the index does not list are
    // kept as well (transformers loads whole shards).
    std::set<std::string> seen;
    for (size_t fi = 0; fi < c.st_.size(); ++fi) {
        const auto& sf = *c.st_[fi];
        for (const auto& t : sf.tensors()) {
            auto it = wm->find(t.name);
            if (it != wm->end() && shard_file[it->get<std::string>()] != int(fi)) continue;  // index says elsewhere
            if (!seen.insert(t.name).second) continue;
            TensorEntry e;
            e.name = t.name;
            e.dtype = t.dtype;
            e.dtype_str = t.dtype_str;
            e.shape = t.shape;
            e.file = int(fi);
            e.data = sf.data(t);
            e.nbytes = t.nbytes();
            c.tensors_.push_back(std::move(e));
        }
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        const std::string shard = it.value().get<std::string>();
        const auto& sf = *c.st_[size_t(shard_file[shard])];
        if (!sf.find(it.key()))
            throw Error(index_path, it.key(), "listed in weight_map as stored in " + sf.path() +
                                                  ", but that shard has no such tensor");
    }
}

void CheckpointLoader::open_llama2c(Checkpoint& c, const std::string& path) {
    c.kind_ = CheckpointKind::Llama2c;
    c.files_.push_back(path);
    Mapping mp = map_readonly(path, 28, "a llama2.c checkpoint (the header alone is 28 bytes)");
    void* m = mp.data;
    const uint64_t size = mp.size;
    c.map_ = m;
    c.map_size_ = size;
    const auto* base = static_cast<const uint8_t*>(m);

    if (std::memcmp(base, "24ka", 4) == 0)  // uint32 0x616b3432 little-endian: llama2.c export v1/v2
        throw Error(path, "", "llama2.c versioned export (magic 'ak42') is not supported; export with "
                              "llama2.c's legacy format (export.py --version 0)");
    Llama2cHeader h;
    std::memcpy(&h, base, 28);
    if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
        h.vocab_size == 0 || h.seq_len <= 0)
        throw Error(path, "", "not a llama2.c checkpoint: header (" + h.describe() + ") has non-positive sizes");
    if (h.dim % h.n_heads != 0)
        throw Error(path, "", "llama2.c header: dim " + std::to_string(h.dim) + " is not divisible by n_heads " +
                                  std::to_string(h.n_heads));
    if (h.n_heads % h.n_kv_heads != 0)
        throw Error(path, "", "llama2.c header: n_heads " + std::to_string(h.n_heads) +
                                  " is not divisible by n_kv_heads " + std::to_string(h.n_kv_heads));
    if (h.head_dim() % 2 != 0)
        throw Error(path, "", "llama2.c header: head dimension " + std::to_string(h.head_dim()) +
                                  " is odd, RoPE needs pairs");

    // Float counts in file order (128-bit so a garbage header cannot overflow).
    using u128 = unsigned __int128;
    const u128 dim = u128(h.dim), hid = u128(h.hidden_dim), L = u128(h.n_layers), V = u128(h.vocab()),
               kv = u128(h.kv_dim()), hd = u128(h.head_dim()), S = u128(h.seq_len);
    u128 floats = V * dim            // token_embedding
                  + L * dim          // rms_att
                  + L * dim * dim    // wq
                  + 2 * L * kv * dim // wk, wv
                  + L * dim * dim    // wo
                  + L * dim          // rms_ffn
                  + 3 * L * hid * dim// w1, w2, w3
                  + dim              // rms_final
                  + S * hd;          // freq_cis_real + freq_cis_imag: (seq_len, head_dim/2) each
    if (!h.shared()) floats += V * dim;  // wcls
    u128 expected = 28 + 4 * floats;
    if (expected != u128(size)) {
        std::string exp = expected > u128(UINT64_MAX) ? std::string("more than 2^64") : std::to_string(uint64_t(expected));
        throw Error(path, "", "llama2.c header (" + h.describe() + ") implies " + exp + " bytes, but the file is " +
                                  std::to_string(size) + " bytes (" +
                                  (expected > u128(size) ? "truncated" : "trailing data") + ")");
    }

    const int64_t D = h.dim, H = h.hidden_dim, KV = h.kv_dim(), NL = h.n_layers, VV = h.vocab();
    uint64_t off = 28;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, uint64_t at, int permute) {
        TensorEntry e;
        e.name = name;
        e.dtype = DType::F32;
        e.dtype_str = "F32";
        e.shape = std::move(shape);
        e.file = 0;
        e.data = base + at;
        e.nbytes = e.numel() * 4;
        e.rope_permute_heads = permute;
        c.tensors_.push_back(std::move(e));
    };
    // Offsets of each stacked array (bytes from the file start).
    const uint64_t o_emb = off;                       off += uint64_t(VV * D) * 4;
    const uint64_t o_rms_att = off;                   off += uint64_t(NL * D) * 4;
    const uint64_t o_wq = off;                        off += uint64_t(NL * D * D) * 4;
    const uint64_t o_wk = off;                        off += uint64_t(NL * KV * D) * 4;
    const uint64_t o_wv = off;                        off += uint64_t(NL * KV * D) * 4;
    const uint64_t o_wo = off;                        off += uint64_t(NL * D * D) * 4;
    const uint64_t o_rms_ffn = off;                   off += uint64_t(NL * D) * 4;
    const uint64_t o_w1 = off;                        off += uint64_t(NL * H * D) * 4;
    const uint64_t o_w2 = off;                        off += uint64_t(NL * D * H) * 4;
    const uint64_t o_w3 = off;                        off += uint64_t(NL * H * D) * 4;
    const uint64_t o_rms_final = off;                 off += uint64_t(D) * 4;
    off += uint64_t(h.seq_len) * uint64_t(h.head_dim()) * 4;  // the two legacy RoPE tables, unused
    const uint64_t o_wcls = off;

    add("model.embed_tokens.weight", {VV, D}, o_emb, 0);
    for (int64_t i = 0; i < NL; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        add(p + "input_layernorm.weight", {D}, o_rms_att + uint64_t(i * D) * 4, 0);
        add(p + "self_attn.q_proj.weight", {D, D}, o_wq + uint64_t(i * D * D) * 4, h.n_heads);
        add(p + "self_attn.k_proj.weight", {KV, D}, o_wk + uint64_t(i * KV * D) * 4, h.n_kv_heads);
        add(p + "self_attn.v_proj.weight", {KV, D}, o_wv + uint64_t(i * KV * D) * 4, 0);
        add(p + "self_attn.o_proj.weight", {D, D}, o_wo + uint64_t(i * D * D) * 4, 0);
        add(p + "post_attention_layernorm.weight", {D}, o_rms_ffn + uint64_t(i * D) * 4, 0);
        add(p + "mlp.gate_proj.weight", {H, D}, o_w1 + uint64_t(i * H * D) * 4, 0);
        add(p + "mlp.up_proj.weight", {H, D}, o_w3 + uint64_t(i * H * D) * 4, 0);
        add(p + "mlp.down_proj.weight", {D, H}, o_w2 + uint64_t(i * D * H) * 4, 0);
    }
    add("model.norm.weight", {D}, o_rms_final, 0);
    if (!h.shared()) add("lm_head.weight", {VV, D}, o_wcls, 0);

    ModelConfig& cfg = c.config_;
    cfg.model_type = "llama";
    cfg.n_layers = h.n_layers;
    cfg.hidden = h.dim;
    cfg.n_heads = h.n_heads;
    cfg.n_kv_heads = h.n_kv_heads;
    cfg.intermediate = h.hidden_dim;
    cfg.vocab = int(VV);
    cfg.max_position = h.seq_len;
    cfg.tie_word_embeddings = h.shared();
    cfg.rope_theta = 10000.0;
    cfg.rms_norm_eps = 1e-5;
    cfg.torch_dtype = "float32";
    cfg.raw = nullptr;  // there is no config.json; hf_config_json() derives one
}

// The first four bytes are "GGUF" (a .gguf under another name).
bool starts_with_gguf_magic(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char m[4] = {};
    return f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

void CheckpointLoader::open_gguf(Checkpoint& c, const std::string& path) {
    c.kind_ = CheckpointKind::Gguf;
    c.files_.push_back(path);
    c.gguf_ = GgufFile::open(path);
    const GgufFile& g = *c.gguf_;
    c.config_ = gguf_model_config(g);
    const bool interleaved = gguf_arch_interleaves_rope(c.config_.model_type);
    const auto& ts = g.tensors();
    for (size_t i = 0; i < ts.size(); ++i) {
        const GgufTensor& t = ts[i];
        TensorEntry e;
        const std::string hf = gguf_to_hf_name(t.name);
        e.name = hf.empty() ? t.name : hf;   // an unknown name stays as stored (the loader names it)
        e.shape = t.shape();
        e.file = 0;
        e.data = t.data;
        e.gguf_index = int(i);
        switch (GgmlType(t.type)) {   // presented dtype: the stored one, or F32 for Q8_0 (exact)
            case GgmlType::F32: e.dtype = DType::F32; break;
            case GgmlType::F16: e.dtype = DType::F16; break;
            case GgmlType::BF16: e.dtype = DType::BF16; break;
            case GgmlType::Q8_0: e.dtype = DType::F32; break;
            default: e.dtype = DType::Unknown; break;
        }
        e.dtype_str = e.dtype == DType::Unknown ? ggml_type_name(t.type) : dtype_name(e.dtype);
        e.nbytes = e.dtype == DType::Unknown ? t.nbytes : e.numel() * dtype_size(e.dtype);
        if (interleaved && e.shape.size() == 2) {
            const int heads = e.name.ends_with("self_attn.q_proj.weight") ? c.config_.n_heads
                              : e.name.ends_with("self_attn.k_proj.weight") ? c.config_.n_kv_heads : 0;
            if (heads > 0) {
                const int64_t hd = c.config_.hidden / c.config_.n_heads;
                if (e.shape[0] != int64_t(heads) * hd)
                    throw Error(path, t.name, "has " + std::to_string(e.shape[0]) + " rows, expected " + std::to_string(heads) +
                                                  " heads x " + std::to_string(hd));
                e.rope_permute_heads = heads;
            }
        }
        c.tensors_.push_back(std::move(e));
    }
}

void CheckpointLoader::build_index(Checkpoint& c) {
    c.index_.clear();
    c.index_.reserve(c.tensors_.size());
    for (size_t i = 0; i < c.tensors_.size(); ++i) c.index_.emplace_back(c.tensors_[i].name, i);
    std::sort(c.index_.begin(), c.index_.end());
    for (size_t i = 1; i < c.index_.size(); ++i)
        if (c.index_[i].first == c.index_[i - 1].first)
            throw Error(c.files_[size_t(c.tensors_[c.index_[i].second].file)], c.index_[i].first,
                        "tensor appears twice in the checkpoint");
}

// ---------------------------------------------------------------------------------------------

Checkpoint::~Checkpoint() {
    st_.clear();
    if (map_) ::munmap(map_, size_t(map_size_));
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& path_in) {
    std::unique_ptr<Checkpoint> c(new Checkpoint());
    std::error_code ec;
    fs::path p = fs::absolute(path_in, ec);
    if (ec) p = path_in;
    p = p.lexically_normal();
    if (p.has_filename() == false && p.has_parent_path()) p = p.parent_path();  // trailing slash
    const std::string ps = p.string();
    auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) throw Error(path_in, "", "no such file or directory");
    c->path_ = ps;

    if (fs::is_directory(st)) {
        c->dir_ = ps;
        const fs::path index = p / "model.safetensors.index.json";
        const fs::path single = p / "model.safetensors";
        if (fs::is_regular_file(index, ec)) {
            c->kind_ = CheckpointKind::HFFolder;
            CheckpointLoader::read_config_beside(*c);
            CheckpointLoader::open_sharded(*c, index.string());
        } else if (fs::is_regular_file(single, ec)) {
            c->kind_ = CheckpointKind::HFFolder;
            CheckpointLoader::read_config_beside(*c);
            CheckpointLoader::open_safetensors_files(*c, {single.string()});
        } else {
            std::vector<std::string> st_files, bin_files, gguf_files;
            for (const auto& de : fs::directory_iterator(p, ec)) {
                if (!de.is_regular_file(ec)) continue;
                const std::string name = de.path().filename().string();
                if (name.ends_with(".safetensors")) st_files.push_back(de.path().string());
                else if (name.ends_with(".bin") && !name.starts_with("tok")) bin_files.push_back(de.path().string());
                else if (name.ends_with(".gguf")) gguf_files.push_back(de.path().string());
            }
            std::sort(st_files.begin(), st_files.end());
            std::sort(bin_files.begin(), bin_files.end());
            if (st_files.size() == 1) {
                c->kind_ = CheckpointKind::HFFolder;
                CheckpointLoader::read_config_beside(*c);
                CheckpointLoader::open_safetensors_files(*c, st_files);
            } else if (st_files.size() > 1) {
                throw Error(ps, "", std::to_string(st_files.size()) +
                                        " .safetensors files but no model.safetensors.index.json to say which "
                                        "holds the model; open one file directly");
            } else if (bin_files.size() == 1) {
                const std::string name = fs::path(bin_files[0]).filename().string();
                if (name.starts_with("pytorch_model"))
                    throw Error(bin_files[0], "", "PyTorch pickle checkpoints are not supported; convert the "
                                                  "model to safetensors first");
                CheckpointLoader::open_llama2c(*c, bin_files[0]);
            } else if (bin_files.size() > 1) {
                throw Error(ps, "", "several .bin files (" + fs::path(bin_files[0]).filename().string() + ", " +
                                        fs::path(bin_files[1]).filename().string() +
                                        ", ...); open the llama2.c checkpoint file directly");
            } else if (gguf_files.size() == 1) {
                CheckpointLoader::open_gguf(*c, gguf_files[0]);
            } else if (gguf_files.size() > 1) {
                throw Error(ps, "", std::to_string(gguf_files.size()) + " .gguf files; open one file directly");
            } else {
                throw Error(ps, "", "no model found: expected model.safetensors (with config.json), "
                                    "model.safetensors.index.json with shards, a llama2.c .bin or a .gguf");
            }
        }
    } else {
        c->dir_ = p.parent_path().string();
        const std::string name = p.filename().string();
        if (name.ends_with(".safetensors")) {
            c->kind_ = CheckpointKind::SafetensorsFile;
            CheckpointLoader::read_config_beside(*c);
            CheckpointLoader::open_safetensors_files(*c, {ps});
        } else if (name.ends_with(".index.json")) {
            c->kind_ = CheckpointKind::HFFolder;
            CheckpointLoader::read_config_beside(*c);
            CheckpointLoader::open_sharded(*c, ps);
        } else if (name.ends_with(".gguf") || starts_with_gguf_magic(ps)) {
            CheckpointLoader::open_gguf(*c, ps);
        } else if (name.starts_with("pytorch_model") && name.ends_with(".bin")) {
            throw Error(ps, "", "PyTorch pickle checkpoints are not supported; convert the model to safetensors first");
        } else {
            CheckpointLoader::open_llama2c(*c, ps);
        }
    }
    CheckpointLoader::build_index(*c);
    return c;
}

uint64_t Checkpoint::size_on_disk() const {
    if (kind_ == CheckpointKind::Llama2c) return map_size_;
    if (kind_ == CheckpointKind::Gguf) return gguf_->file_size();
    uint64_t s = 0;
    for (const auto& f : st_) s += f->file_size();
    return s;
}

const TensorEntry* Checkpoint::find(const std::string& name) const {
    auto it = std::lower_bound(index_.begin(), index_.end(), name,
                               [](const std::pair<std::string, size_t>& a, const std::string& n) { return a.first < n; });
    if (it == index_.end() || it->first != name) return nullptr;
    return &tensors_[it->second];
}

std::vector<std::string> Checkpoint::aux_files() const {
    static const char* kNames[] = {"tokenizer.json",        "tokenizer.model",        "tokenizer_config.json",
                                   "special_tokens_map.json", "generation_config.json", "vocab.json",
                                   "merges.txt",            "added_tokens.json",      "tokenizer.bin"};
    std::vector<std::string> out;
    std::error_code ec;
    for (const char* n : kNames) {
        // llama2.c folders list their tok*.bin files below, in name order (tokenizer.bin included).
        if (kind_ == CheckpointKind::Llama2c && std::string(n) == "tokenizer.bin") continue;
        fs::path f = fs::path(dir_) / n;
        if (fs::is_regular_file(f, ec)) out.push_back(f.string());
    }
    if (kind_ == CheckpointKind::Llama2c) {
        std::vector<std::string> toks;
        for (const auto& de : fs::directory_iterator(dir_, ec)) {
            if (!de.is_regular_file(ec)) continue;
            const std::string name = de.path().filename().string();
            if (name.ends_with(".bin") && name.starts_with("tok") && de.path().string() != files_[0])
                toks.push_back(de.path().string());
        }
        std::sort(toks.begin(), toks.end());
        out.insert(out.end(), toks.begin(), toks.end());
    }
    return out;
}

void Checkpoint::read_f32(const TensorEntry& t, float* out, bool check_finite) const {
    const std::string& file = files_[size_t(t.file)];
    const size_t n = size_t(t.numel());
    if (kind_ == CheckpointKind::Gguf) {   // the GGUF reader converts (and names an unreadable type)
        const GgufTensor& g = gguf_->tensors()[size_t(t.gguf_index)];
        if (t.rope_permute_heads > 0) {
            const std::vector<float> src = gguf_->read_f32(g, false);
            const int64_t rows = t.shape.at(0), cols = t.shape.size() > 1 ? t.shape[1] : 1;
            const int64_t hd = rows / t.rope_permute_heads;
            for (int64_t r = 0; r < rows; ++r)
                std::memcpy(out + r * cols, src.data() + rope_interleaved_row(r, hd) * cols, size_t(cols) * 4);
        } else {
            gguf_->read_f32(g, out, false);
        }
    } else if (!dtype_is_float_convertible(t.dtype)) {
        throw Error(file, t.name, "dtype " + t.dtype_str + " cannot be read as fp32");
    } else if (t.rope_permute_heads > 0) {
        const int64_t rows = t.shape.at(0), cols = t.shape.size() > 1 ? t.shape[1] : 1;
        const int64_t hd = rows / t.rope_permute_heads;
        const size_t esz = dtype_size(t.dtype);
        for (int64_t r = 0; r < rows; ++r)
            to_f32(t.dtype, t.data + size_t(rope_interleaved_row(r, hd) * cols) * esz, out + size_t(r * cols), size_t(cols));
    } else {
        to_f32(t.dtype, t.data, out, n);
    }
    if (check_finite) {
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite(out[i])) {
                if (bad == 0) first = i;
                ++bad;
            }
        if (bad) {
            std::string where = "flat index " + std::to_string(first);
            if (t.shape.size() == 2)
                where += " (row " + std::to_string(int64_t(first) / t.shape[1]) + ", col " +
                         std::to_string(int64_t(first) % t.shape[1]) + ")";
            throw Error(file, t.name, std::to_string(bad) + " non-finite value" + (bad > 1 ? "s" : "") +
                                          " (NaN/Inf) of " + std::to_string(n) + "; first at " + where + ": " +
                                          std::to_string(out[first]));
        }
    }
}

std::vector<float> Checkpoint::read_f32(const TensorEntry& t, bool check_finite) const {
    std::vector<float> v(size_t(t.numel()));
    read_f32(t, v.data(), check_finite);
    return v;
}

void Checkpoint::release(const TensorEntry& t) const {
    if (kind_ == CheckpointKind::Gguf) return gguf_->release(gguf_->tensors()[size_t(t.gguf_index)]);
    release_pages(t.data, t.nbytes);   // neighbours sharing an edge page lose nothing but a page fault
}

std::vector<uint8_t> Checkpoint::read_bytes(const TensorEntry& t) const {
    std::vector<uint8_t> out(size_t(t.nbytes));
    if (kind_ == CheckpointKind::Gguf && GgmlType(gguf_->tensors()[size_t(t.gguf_index)].type) == GgmlType::Q8_0) {
        read_f32(t, reinterpret_cast<float*>(out.data()), false);   // presented as F32
        return out;
    }
    if (t.rope_permute_heads > 0) {
        const int64_t rows = t.shape.at(0);
        const int64_t hd = rows / t.rope_permute_heads;
        const size_t row_bytes = size_t(t.nbytes / uint64_t(rows));
        for (int64_t r = 0; r < rows; ++r)
            std::memcpy(out.data() + size_t(r) * row_bytes, t.data + size_t(rope_interleaved_row(r, hd)) * row_bytes, row_bytes);
    } else if (t.nbytes) {
        std::memcpy(out.data(), t.data, size_t(t.nbytes));
    }
    return out;
}

nlohmann::json Checkpoint::hf_config_json() const {
    if (!config_.raw.is_null() || (kind_ != CheckpointKind::Llama2c && kind_ != CheckpointKind::Gguf)) return config_.raw;
    const ModelConfig& c = config_;
    nlohmann::json j;
    const bool qwen2 = c.model_type == "qwen2";
    j["architectures"] = {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
    j["model_type"] = qwen2 ? "qwen2" : "llama";
    j["hidden_size"] = c.hidden;
    j["intermediate_size"] = c.intermediate;
    j["num_hidden_layers"] = c.n_layers;
    j["num_attention_heads"] = c.n_heads;
    j["num_key_value_heads"] = c.n_kv_heads;
    j["vocab_size"] = c.vocab;
    j["max_position_embeddings"] = c.max_position;
    j["rms_norm_eps"] = c.rms_norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    j["hidden_act"] = "silu";
    j["torch_dtype"] = c.torch_dtype.empty() ? "float32" : c.torch_dtype;
    j["bos_token_id"] = gguf_ ? gguf_->get_int("tokenizer.ggml.bos_token_id", 1) : 1;
    j["eos_token_id"] = gguf_ ? gguf_->get_int("tokenizer.ggml.eos_token_id", 2) : 2;
    return j;
}

ModelConfig read_model_config(const std::string& path) {
    nlohmann::json j = parse_json_file(path);
    if (!j.is_object()) throw Error(path, "", "config.json must hold a JSON object, got " + std::string(j.type_name()));
    ModelConfig c;
    ConfigReader r{path, j};
    r.string({"model_type"}, c.model_type);
    r.integer({"num_hidden_layers", "n_layer"}, c.n_layers);
    r.integer({"hidden_size", "n_embd"}, c.hidden);
    r.integer({"num_attention_heads", "n_head"}, c.n_heads);
    if (!r.integer({"num_key_value_heads"}, c.n_kv_heads)) c.n_kv_heads = c.n_heads;
    const bool gpt2_like = c.model_type == "gpt2" || c.model_type == "gpt_bigcode" || j.contains("n_embd");
    if (!r.integer({"intermediate_size", "n_inner"}, c.intermediate) && gpt2_like) c.intermediate = 4 * c.hidden;
    r.integer({"vocab_size"}, c.vocab);
    r.integer({"max_position_embeddings", "n_positions"}, c.max_position);
    c.tie_word_embeddings = !untied_by_default(c.model_type);
    r.boolean({"tie_word_embeddings"}, c.tie_word_embeddings);
    r.number({"rope_theta"}, c.rope_theta);
    r.number({"rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"}, c.rms_norm_eps);
    r.string({"torch_dtype", "dtype"}, c.torch_dtype);
    const std::pair<int, const char*> sizes[] = {
        {c.n_layers, "num_hidden_layers"}, {c.hidden, "hidden_size"}, {c.n_heads, "num_attention_heads"},
        {c.n_kv_heads, "num_key_value_heads"}, {c.intermediate, "intermediate_size"}, {c.vocab, "vocab_size"}};
    for (const auto& [v, name] : sizes)
        if (v < 0) throw Error(path, "", std::string("field '") + name + "' is negative");
    c.raw = std::move(j);
    return c;
}

}  // namespace loftq
