// packed_reader.cpp: see packed_reader.h.
#include "io/packed_reader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/json_read.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace loftq {

bool is_packed_checkpoint(const Checkpoint& ck) {
    for (const auto& t : ck.tensors())
        if (t.name.ends_with(packed::kCodes)) return true;
    return false;
}

bool is_packed_part(const std::string& name) {
    for (const char* suf : {packed::kCodes, packed::kScales, packed::kScalesQ, packed::kScalesAbsmax, packed::kScalesOffset,
                            ".lora_A.weight", ".lora_B.weight"})
        if (name.ends_with(suf)) return true;
    return false;
}

namespace packed {

void dq_quantize_scales(const float* s, size_t n, uint8_t* q, float* absmax, float* offset) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += double(s[i]);
    const float off = n ? float(sum / double(n)) : 0.f;
    *offset = off;
    for (size_t j = 0, g = 0; j < n; j += kScaleBlock, ++g) {
        const size_t e = std::min(n, j + kScaleBlock);
        float a = 0.f;
        for (size_t i = j; i < e; ++i) a = std::max(a, std::abs(s[i] - off));
        absmax[g] = a;
        for (size_t i = j; i < e; ++i) {
            int v = 0;
            if (a > 0.f) {
                float t = (s[i] - off) / a * 127.0f;
                v = int(std::nearbyint(t));
                v = std::clamp(v, -127, 127);
            }
            q[i] = uint8_t(128 + v);
        }
    }
}

void dq_dequantize_scales(const uint8_t* q, const float* absmax, float offset, size_t n, float* out) {
    for (size_t i = 0; i < n; ++i) {
        const float step = absmax[i / kScaleBlock] / 127.0f;
        volatile float v = float(int(q[i]) - 128) * step;  // volatile: no fused multiply-add
        out[i] = std::max(0.f, v + offset);
    }
}

}  // namespace packed

namespace {
const char* const kMeta = "__metadata__";

json parse_meta(const SafetensorsFile& f, const std::string& key, bool required) {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end()) {
        if (required) throw Error(f.path(), kMeta, "has no '" + key + "' entry: not a complete packed LoftQ export");
        return json();
    }
    return parse_json_checked(it->second, f.path(), "__metadata__ '" + key + "'");
}
}  // namespace

PackedReader::~PackedReader() = default;

std::unique_ptr<PackedReader> PackedReader::open(const std::string& path) {
    std::unique_ptr<PackedReader> r(new PackedReader());
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        r->dir_ = fs::absolute(path).lexically_normal().string();
        const fs::path idx = fs::path(r->dir_) / "model.safetensors.index.json";
        const fs::path one = fs::path(r->dir_) / "model.safetensors";
        if (fs::exists(idx, ec)) {
            const json j = read_json_file(idx.string(), "shard index");
            if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
                throw Error(idx.string(), "", "has no 'weight_map' object");
            std::set<std::string> shards;
            for (auto& [k, v] : j["weight_map"].items()) {
                if (!v.is_string()) throw Error(idx.string(), k, "weight_map entry is not a file name");
                shards.insert(v.get<std::string>());
            }
            for (auto& s : shards) r->paths_.push_back((fs::path(r->dir_) / s).string());
        } else if (fs::exists(one, ec)) {
            r->paths_.push_back(one.string());
        } else {
            throw Error(r->dir_, "", "no model.safetensors or model.safetensors.index.json: not a packed LoftQ export folder");
        }
    } else {
        if (!fs::exists(path, ec)) throw Error(path, "", "no such file or folder");
        r->paths_.push_back(fs::absolute(path).lexically_normal().string());
        r->dir_ = fs::path(r->paths_[0]).parent_path().string();
    }
    for (auto& p : r->paths_) {
        if (!fs::exists(p, ec)) throw Error(p, "", "shard listed in model.safetensors.index.json is missing");
        r->files_.push_back(SafetensorsFile::open(p));
        for (auto& t : r->files_.back()->tensors()) r->where_.push_back({t.name, r->files_.size() - 1});
    }
    std::sort(r->where_.begin(), r->where_.end());
    for (size_t i = 1; i < r->where_.size(); ++i)
        if (r->where_[i].first == r->where_[i - 1].first)
            throw Error(r->paths_[r->where_[i].second], r->where_[i].first, "tensor is stored in two shards");

    // Magic and version first.
    const SafetensorsFile& f0 = *r->files_.front();
    auto fmt = f0.metadata().find("format");
    if (fmt == f0.metadata().end() || fmt->second != packed::kFormat)
        throw Error(f0.path(), kMeta,
                    "format is '" + (fmt == f0.metadata().end() ? std::string("(none)") : fmt->second) +
                        "', expected 'loftq-packed': not a packed LoftQ export (a Hugging Face checkpoint opens with `loftq inspect`)");
    auto ver = f0.metadata().find("format_version");
    if (ver == f0.metadata().end() || ver->second != packed::kVersion)
        throw Error(f0.path(), kMeta,
                    "format_version is '" + (ver == f0.metadata().end() ? std::string("(none)") : ver->second) +
                        "'; this reader knows version 1 (update loftq to read newer exports)");

    json ws = parse_meta(f0, "loftq.weights", true);
    json order = parse_meta(f0, "loftq.tensors", true);
    r->plan_ = parse_meta(f0, "loftq.plan", false);
    auto ms = f0.metadata().find("loftq.max_shard_bytes");
    if (ms != f0.metadata().end()) {
        try {
            r->max_shard_ = std::stoull(ms->second);
        } catch (const std::exception&) {
            throw Error(f0.path(), kMeta, "'loftq.max_shard_bytes' is not a number: '" + ms->second + "'");
        }
    }
    if (!ws.is_object()) throw Error(f0.path(), kMeta, "'loftq.weights' must be a JSON object {name: {...}}");
    if (!order.is_array()) throw Error(f0.path(), kMeta, "'loftq.tensors' must be a JSON array of tensor names");

    std::map<std::string, PackedWeight> by_name;
    for (auto& item : ws.items()) {
        const std::string& name = item.key();  // not a structured binding: clang 14 cannot capture one
        const json& e = item.value();
        auto bad = [&](const std::string& why) { return Error(f0.path(), kMeta, "'loftq.weights' entry '" + name + "': " + why); };
        if (!e.is_object()) throw bad("must be an object");
        PackedWeight w;
        w.name = name;
        try {
            auto q = quant_kind_from_name(e.at("quant").get<std::string>());
            if (!q) throw bad("unknown quantizer '" + e.at("quant").get<std::string>() + "'");
            w.quant = *q;
            w.bits = e.value("bits", quant_format(w.quant).bits);
            w.block = e.at("block").get<int>();
            const json& sh = e.at("shape");
            if (!sh.is_array() || sh.size() != 2) throw bad("'shape' must be [rows, cols]");
            w.rows = sh[0].get<int64_t>();
            w.cols = sh[1].get<int64_t>();
            w.dtype = dtype_from_name(e.at("dtype").get<std::string>());
            w.double_quant = e.value("double_quant", false);
            w.rank = e.value("rank", 0);
            w.lora_alpha = e.value("lora_alpha", double(w.rank));
        } catch (const Error&) {
            throw;
        } catch (const std::exception& ex) {
            throw bad(std::string("missing or mistyped field: ") + ex.what());
        }
        if (w.bits != quant_format(w.quant).bits)
            throw bad("bits " + std::to_string(w.bits) + " do not match " + quant_format(w.quant).name + " (" +
                      std::to_string(quant_format(w.quant).bits) + " bits)");
        if (w.block <= 0) throw bad("block must be positive");
        if (w.rows <= 0 || w.cols <= 0) throw bad("shape must be positive");
        if (w.rows > INT32_MAX || w.cols > INT32_MAX)   // so that rows x cols cannot overflow
            throw bad("shape [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] is too large");
        if (!dtype_is_float_convertible(w.dtype)) throw bad("dtype must be F32, F16 or BF16");
        if (w.rank < 0) throw bad("rank must be >= 0");
        by_name[name] = w;
    }
    for (auto& n : order) {
        if (!n.is_string()) throw Error(f0.path(), kMeta, "'loftq.tensors' holds a non-string entry");
        std::string name = n.get<std::string>();
        r->order_.push_back(name);
        auto it = by_name.find(name);
        if (it != by_name.end()) {
            r->weights_.push_back(it->second);
            by_name.erase(it);
        } else if (!r->tensor(name)) {
            throw Error(r->file_of(name), name, "listed in 'loftq.tensors' but not stored");
        }
    }
    if (!by_name.empty())
        throw Error(f0.path(), kMeta, "'loftq.weights' names '" + by_name.begin()->first + "', which 'loftq.tensors' does not list");
    for (auto& w : r->weights_) r->validate_weight(w);
    // The stored code tables (when present) must be this engine's, value for value.
    json books = parse_meta(f0, "loftq.codebooks", false);
    if (!books.is_null()) {
        if (!books.is_object()) throw Error(f0.path(), kMeta, "'loftq.codebooks' must be a JSON object {quantizer: [values]}");
        for (const auto& w : r->weights_) {
            const QuantFormat& f = quant_format(w.quant);
            auto it = books.find(f.name);
            if (it == books.end() || !it->is_array() || int(it->size()) != f.levels)
                throw Error(f0.path(), kMeta, std::string("'loftq.codebooks' lacks the ") + std::to_string(f.levels) + " values of " + f.name);
            for (int i = 0; i < f.levels; ++i)
                if (!(*it)[size_t(i)].is_number() || float((*it)[size_t(i)].get<double>()) != f.table[i])
                    throw Error(f0.path(), kMeta, std::string("'loftq.codebooks' ") + f.name + " value " + std::to_string(i) +
                                                      " differs from this engine's table");
        }
    }
    return r;
}

const std::string& PackedReader::file_of(const std::string& tensor) const {
    const SafetensorsFile* f = nullptr;
    if (this->tensor(tensor, &f)) return f->path();
    return paths_.front();
}

const TensorInfo* PackedReader::tensor(const std::string& name, const SafetensorsFile** file) const {
    auto it = std::lower_bound(where_.begin(), where_.end(), std::make_pair(name, size_t(0)));
    if (it == where_.end() || it->first != name) return nullptr;
    const SafetensorsFile& f = *files_[it->second];
    if (file) *file = &f;
    return f.find(name);
}

const uint8_t* PackedReader::data(const std::string& name) const {
    const SafetensorsFile* f = nullptr;
    const TensorInfo* t = tensor(name, &f);
    if (!t) throw Error(paths_.front(), name, "tensor is missing");
    return f->data(*t);
}

const PackedWeight* PackedReader::weight(const std::string& name) const {
    for (auto& w : weights_)
        if (w.name == name) return &w;
    return nullptr;
}

void PackedReader::validate_weight(const PackedWeight& w) const {
    auto need = [&](const std::string& suffix, DType dt, uint64_t numel, const char* what) -> const TensorInfo* {
        const std::string n = w.name + suffix;
        const TensorInfo* t = tensor(n);
        if (!t) throw Error(file_of(n), n, std::string("missing ") + what + " tensor of quantized weight '" + w.name + "'");
        if (t->dtype != dt)
            throw Error(file_of(n), n, std::string(what) + " tensor has dtype " + t->dtype_str + ", expected " + dtype_name(dt));
        if (t->shape.size() != 1 || t->numel() != numel)
            throw Error(file_of(n), n,
                        std::string(what) + " tensor holds " + std::to_string(t->numel()) + " elements, expected " +
                            std::to_string(numel) + " for " + std::to_string(w.rows) + "x" + std::to_string(w.cols) + " " +
                            quant_format(w.quant).name + " block " + std::to_string(w.block) + " (truncated or wrong size)");
        return t;
    };
    const size_t n = w.numel(), nb = w.nblocks();
    const size_t pk = packed_size(n, w.bits);
    need(packed::kCodes, DType::U8, pk, "codes");
    if (w.double_quant) {
        need(packed::kScalesQ, DType::U8, nb, "quantized scales");
        need(packed::kScalesAbsmax, DType::F32, packed::dq_blocks(nb), "scale absmax");
        need(packed::kScalesOffset, DType::F32, 1, "scale offset");
    } else {
        need(packed::kScales, DType::F32, nb, "scales");
    }
    // Bits after the last code are zero as pack_codes writes them; anything else is corruption.
    const size_t used = n * size_t(w.bits) % 8;
    if (used) {
        uint8_t last = data(w.name + packed::kCodes)[pk - 1];
        if (last >> used)
            throw Error(file_of(w.name + packed::kCodes), w.name + packed::kCodes,
                        "padding bits after the last code are not zero (corrupt codes)");
    }
    if (w.rank > 0) {
        std::string mp = w.name.size() > 7 && w.name.compare(w.name.size() - 7, 7, ".weight") == 0 ? w.name.substr(0, w.name.size() - 7) : w.name;
        const TensorInfo* A = tensor(mp + ".lora_A.weight");
        const TensorInfo* B = tensor(mp + ".lora_B.weight");
        if (!A || !B) throw Error(file_of(mp + ".lora_A.weight"), mp + (A ? ".lora_B.weight" : ".lora_A.weight"), "missing LoRA factor");
        if (A->dtype != DType::F32 || B->dtype != DType::F32 || A->shape.size() != 2 || B->shape.size() != 2 ||
            A->shape[0] != w.rank || B->shape[1] != w.rank || A->shape[1] != w.cols || B->shape[0] != w.rows)
            throw Error(file_of(mp + ".lora_A.weight"), mp + ".lora_A.weight",
                        "LoRA factors must be F32 [r, in] and [out, r] with r = " + std::to_string(w.rank) + " and the weight's " +
                            std::to_string(w.rows) + " x " + std::to_string(w.cols) + " (the metadata's shape or the factors are wrong)");
    }
}

std::vector<uint8_t> PackedReader::codes(const PackedWeight& w) const {
    const std::string cn = w.name + packed::kCodes;
    std::vector<uint8_t> c(w.numel());
    unpack_codes(data(cn), c.size(), w.bits, c.data());
    const int levels = quant_format(w.quant).levels;
    for (size_t i = 0; i < c.size(); ++i)
        if (c[i] >= levels)
            throw Error(file_of(cn), cn, "code " + std::to_string(c[i]) + " at element " + std::to_string(i) + " is out of range for " +
                                             quant_format(w.quant).name + " (" + std::to_string(levels) + " levels)");
    return c;
}

std::vector<float> PackedReader::scales(const PackedWeight& w) const {
    const size_t nb = w.nblocks();
    std::vector<float> s(nb);
    std::string sn;
    if (w.double_quant) {
        sn = w.name + packed::kScalesAbsmax;
        std::vector<float> a(packed::dq_blocks(nb));
        std::memcpy(a.data(), data(sn), a.size() * 4);
        float off;
        std::memcpy(&off, data(w.name + packed::kScalesOffset), 4);
        if (!std::isfinite(off)) throw Error(file_of(w.name + packed::kScalesOffset), w.name + packed::kScalesOffset, "offset is not finite");
        for (size_t j = 0; j < a.size(); ++j)
            if (!(a[j] >= 0.f) || !std::isfinite(a[j]))
                throw Error(file_of(sn), sn, "absmax of scale group " + std::to_string(j) + " is negative or not finite");
        packed::dq_dequantize_scales(data(w.name + packed::kScalesQ), a.data(), off, nb, s.data());
    } else {
        sn = w.name + packed::kScales;
        std::memcpy(s.data(), data(sn), nb * 4);
    }
    for (size_t b = 0; b < nb; ++b)
        if (!(s[b] >= 0.f) || !std::isfinite(s[b]))
            throw Error(file_of(sn), sn, "scale of block " + std::to_string(b) + " is negative or not finite (" + std::to_string(s[b]) + ")");
    return s;
}

std::vector<float> PackedReader::dequantize(const PackedWeight& w) const {
    std::vector<uint8_t> c = codes(w);
    std::vector<float> s = scales(w);
    std::vector<float> out(w.numel());
    loftq::dequantize(quant_format(w.quant), c.data(), s.data(), out.size(), w.block, out.data());
    return out;
}

uint64_t PackedReader::stored_bytes(const PackedWeight& w) const {
    uint64_t b = 0;
    const char* suffixes[] = {packed::kCodes, packed::kScales, packed::kScalesQ, packed::kScalesAbsmax, packed::kScalesOffset};
    for (const char* s : suffixes)
        if (const TensorInfo* t = tensor(w.name + s)) b += t->nbytes();
    return b;
}

}  // namespace loftq
