// gguf.cpp: the GGUF reader declared in gguf.h.
//
// open() checks, in file order, each failure a one-line loftq::Error naming the file (and the key
// or tensor): at least 4 bytes; the magic "GGUF" (else says what the file looks like); version 2
// or 3 (1: 32-bit counts, refused; a byte-swapped 2 or 3: big-endian, refused; others unknown);
// the 24-byte header; counts that the bytes left can hold (no allocation from a count before
// that check); every string and array within the file; known value types; arrays nested at most
// kMaxArrayDepth deep; unique keys; general.alignment a UINT32 power of two; unique tensor names;
// n_dims in 1..4; every ne > 0 with an element count and byte size that fit in int64; a known ggml
// type; ne[0] a whole number of the type's blocks; offsets multiples of the alignment; every data
// range inside the file; no two ranges overlapping.
// Leaves out: writing (gguf_writer.cpp), the type arithmetic (quant/ggml_types.cpp).
#include "io/gguf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "quant/ggml_types.h"

namespace loftq {

namespace {

constexpr int kMaxArrayDepth = 3;     // an array of arrays of arrays; deeper is refused
constexpr uint32_t kMaxDims = 4;      // GGML_MAX_DIMS
constexpr uint64_t kHeaderBytes = 24; // magic, version, tensor_count, kv_count
// Fewest bytes one entry can take, for checking a count against the bytes left:
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, a 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one ne, type, offset

std::string n2s(uint64_t v) { return std::to_string(v); }

// Bytes of one scalar of a value type; 0 for String/Array (variable) and unknown types.
uint64_t scalar_bytes(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
        case GgufType::U16: case GgufType::I16: return 2;
        case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
        case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
        default: return 0;
    }
}

bool known_type(uint32_t t) { return t <= uint32_t(GgufType::F64); }

std::string hex_bytes(const uint8_t* p, size_t n) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        if (i) s += ' ';
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}

// What a file that does not start with "GGUF" looks like, for the wrong-magic message.
std::string describe_magic(const uint8_t* p, uint64_t size) {
    std::string seen = "starts with bytes " + hex_bytes(p, 4);
    if (size >= 9) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];
        if (n > 0 && n <= size - 8 && p[8] == '{') return seen + ": looks like a safetensors file (an 8-byte header length, then JSON)";
    }
    if (p[0] == 'P' && p[1] == 'K') return seen + ": looks like a zip archive (a PyTorch .pt/.bin checkpoint?)";
    if (p[0] == 0x80 && p[1] <= 5) return seen + ": looks like a Python pickle (a PyTorch checkpoint?)";
    if (p[0] == '{' || p[0] == '[') return seen + ": looks like JSON";
    if (!std::memcmp(p, "FUGG", 4)) return seen + ": the magic is byte-swapped (a big-endian GGUF file?)";
    // Older llama.cpp containers wrote their magic as a little-endian uint32.
    for (const char* old : {"lmgg", "fmgg", "tjgg", "algg"})
        if (!std::memcmp(p, old, 4)) return seen + ": an old GGML/GGMF/GGJT file from before GGUF; re-convert it with a current llama.cpp";
    return seen;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
    static const char* names[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                  "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    return uint32_t(t) <= uint32_t(GgufType::F64) ? names[uint32_t(t)] : "?";
}

std::string GgufValue::type_text() const {
    if (type != GgufType::Array) return gguf_type_name(type);
    return std::string("ARRAY of ") + gguf_type_name(array_type);
}

std::vector<int64_t> GgufTensor::shape() const { return std::vector<int64_t>(ne.rbegin(), ne.rend()); }

uint64_t GgufTensor::numel() const {
    uint64_t n = 1;
    for (int64_t d : ne) n *= uint64_t(d);
    return n;
}

// The cursor over the mapped bytes; friend of GgufFile. Every read checks the bytes left first.
struct GgufParser {
    GgufFile& f;
    const uint8_t* base;
    uint64_t size;
    uint64_t pos = 0;

    [[noreturn]] void fail(const std::string& what, const std::string& tensor = "") const { throw Error(f.path_, tensor, what); }
    uint64_t left() const { return size - pos; }
    void need(uint64_t n, const std::string& what, const std::string& tensor = "") const {
        if (n > left())
            fail("truncated: " + what + " at byte " + n2s(pos) + " needs " + n2s(n) + " bytes, " + n2s(left()) +
                     " left (file is " + n2s(size) + " bytes)", tensor);
    }
    template <class T>
    T scalar(const std::string& what, const std::string& tensor = "") {
        need(sizeof(T), what, tensor);
        T v;
        std::memcpy(&v, base + pos, sizeof(T));  // little-endian host (x86-64, aarch64)
        pos += sizeof(T);
        return v;
    }
    std::string str(const std::string& what, const std::string& tensor = "") {
        const uint64_t n = scalar<uint64_t>(what + " length", tensor);
        if (n > left())
            fail(what + " length " + n2s(n) + " at byte " + n2s(pos - 8) + " goes beyond the file (" + n2s(left()) +
                     " bytes left, file is " + n2s(size) + " bytes)", tensor);
        std::string s(reinterpret_cast<const char*>(base + pos), size_t(n));
        pos += n;
        return s;
    }

    // One value of type `t` for `key`. depth: how many arrays enclose it. keep=false (the elements
    // of a nested array) checks and skips without storing.
    void value(GgufType t, const std::string& key, int depth, GgufValue* out) {
        const std::string what = "value of '" + key + "'";
        double fv = 0;
        switch (t) {
            case GgufType::String: {
                std::string s = str(what);
                if (out) out->str = std::move(s);
                return;
            }
            case GgufType::Array: {
                if (depth + 1 > kMaxArrayDepth)
                    fail("metadata '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
                const uint32_t et = scalar<uint32_t>("array element type of '" + key + "'");
                if (!known_type(et))
                    fail("metadata '" + key + "': unknown array element type " + std::to_string(et) + " (known: 0..12)");
                const uint64_t count = scalar<uint64_t>("array count of '" + key + "'");
                const GgufType e = GgufType(et);
                const uint64_t min_elem = e == GgufType::String ? 8 : e == GgufType::Array ? 12 : scalar_bytes(e);
                if (count > left() / min_elem)
                    fail("metadata '" + key + "': array of " + n2s(count) + " " + gguf_type_name(e) + " cannot fit in the " +
                         n2s(left()) + " bytes left (file is " + n2s(size) + " bytes)");
                if (out) {
                    out->array_type = e;
                    out->count = count;
                    if (e == GgufType::String) out->strs.reserve(size_t(count));
                    else if (e != GgufType::Array) out->nums.reserve(size_t(count));
                }
                for (uint64_t k = 0; k < count; ++k) {
                    if (e == GgufType::String) {
                        std::string s = str("element " + n2s(k) + " of '" + key + "'");
                        if (out) out->strs.push_back(std::move(s));
                    } else if (e == GgufType::Array) {
                        value(e, key, depth + 1, nullptr);  // nested: checked, skipped
                    } else {
                        GgufValue v;
                        value(e, key, depth + 1, &v);
                        if (out) out->nums.push_back(v.f);
                    }
                }
                return;
            }
            case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64: case GgufType::Bool: {
                uint64_t u = t == GgufType::U8 || t == GgufType::Bool ? scalar<uint8_t>(what)
                           : t == GgufType::U16                      ? scalar<uint16_t>(what)
                           : t == GgufType::U32                      ? scalar<uint32_t>(what)
                                                                     : scalar<uint64_t>(what);
                if (t == GgufType::Bool) u = u != 0;
                if (out) {
                    out->u = u;
                    if (u <= uint64_t(INT64_MAX)) out->i = int64_t(u);
                    out->f = double(u);
                }
                return;
            }
            case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: {
                int64_t i = t == GgufType::I8    ? scalar<int8_t>(what)
                          : t == GgufType::I16   ? scalar<int16_t>(what)
                          : t == GgufType::I32   ? scalar<int32_t>(what)
                                                 : scalar<int64_t>(what);
                if (out) {
                    out->i = i;
                    if (i >= 0) out->u = uint64_t(i);
                    out->f = double(i);
                }
                return;
            }
            case GgufType::F32: fv = scalar<float>(what); break;
            case GgufType::F64: fv = scalar<double>(what); break;
        }
        if (out) out->f = fv;
    }

    void parse() {
        // Magic and version first: they say what to do when the file is not one we read.
        if (std::memcmp(base, "GGUF", 4) != 0) fail("not a GGUF file (no \"GGUF\" magic): " + describe_magic(base, size));
        pos = 4;
        const uint32_t version = scalar<uint32_t>("the version");
        const uint32_t swapped = __builtin_bswap32(version);
        if (version == 1)
            fail("GGUF version 1 (32-bit counts, 2023) is not supported: re-convert the model with a current llama.cpp "
                 "(versions 2 and 3 are read)");
        if (version != 2 && version != 3) {
            if (swapped >= 1 && swapped <= 3)
                fail("big-endian GGUF file (version " + std::to_string(swapped) +
                     " byte-swapped): only little-endian files are read; convert it with gguf-py's gguf_convert_endian");
            fail("unknown GGUF version " + std::to_string(version) + " (versions 2 and 3 are read)");
        }
        f.version_ = version;
        need(kHeaderBytes - pos, "the header (tensor and metadata counts)");
        const uint64_t n_tensors = scalar<uint64_t>("tensor_count");
        const uint64_t n_kv = scalar<uint64_t>("metadata_kv_count");
        // Both counts against the bytes left, before anything is allocated from them.
        if (n_kv > left() / kMinKvBytes)
            fail("metadata_kv_count " + n2s(n_kv) + " cannot fit in the file (" + n2s(left()) +
                 " bytes after the header; each key/value takes at least " + n2s(kMinKvBytes) + ")");
        if (n_tensors > left() / kMinTensorInfoBytes || n_kv * kMinKvBytes > left() - n_tensors * kMinTensorInfoBytes)
            fail("tensor_count " + n2s(n_tensors) + " (with metadata_kv_count " + n2s(n_kv) + ") cannot fit in the file (" + n2s(left()) +
                 " bytes after the header; each tensor info takes at least " + n2s(kMinTensorInfoBytes) + ")");

        f.kv_.reserve(size_t(n_kv));
        for (uint64_t k = 0; k < n_kv; ++k) {
            std::string key = str("metadata key " + n2s(k));
            const uint32_t t = scalar<uint32_t>("value type of '" + key + "'");
            if (!known_type(t)) fail("metadata '" + key + "': unknown value type " + std::to_string(t) + " (known: 0..12)");
            GgufValue val;
            val.type = GgufType(t);
            value(val.type, key, 0, &val);
            if (!f.kv_index_.emplace(key, f.kv_.size()).second) fail("metadata key '" + key + "' appears twice");
            f.kv_.emplace_back(std::move(key), std::move(val));
        }
        if (const GgufValue* a = f.find("general.alignment")) {
            if (a->type != GgufType::U32 || a->u == 0 || (a->u & (a->u - 1)) != 0)
                fail("metadata 'general.alignment' must be a UINT32 power of two, got " + a->type_text() +
                     (a->type == GgufType::Array || a->type == GgufType::String ? "" : " " + n2s(a->u)));
            f.alignment_ = a->u;
        }

        f.tensors_.reserve(size_t(n_tensors));
        for (uint64_t k = 0; k < n_tensors; ++k) {
            GgufTensor t;
            t.name = str("name of tensor " + n2s(k));
            const std::string& nm = t.name;
            if (!f.tensor_index_.emplace(nm, f.tensors_.size()).second) fail("tensor name appears twice", nm);
            const uint32_t n_dims = scalar<uint32_t>("n_dims", nm);
            if (n_dims < 1 || n_dims > kMaxDims) fail("n_dims " + std::to_string(n_dims) + " is outside 1..4", nm);
            int64_t numel = 1;
            for (uint32_t d = 0; d < n_dims; ++d) {
                const uint64_t e = scalar<uint64_t>("ne[" + std::to_string(d) + "]", nm);
                if (e == 0 || e > uint64_t(INT64_MAX))
                    fail("ne[" + std::to_string(d) + "] = " + (e == 0 ? "0" : std::to_string(int64_t(e))) + " must be positive", nm);
                if (__builtin_mul_overflow(numel, int64_t(e), &numel)) fail("shape is too large (element count overflows int64)", nm);
                t.ne.push_back(int64_t(e));
            }
            t.type = scalar<uint32_t>("ggml type", nm);
            const GgmlTypeInfo* ti = ggml_type_info(t.type);
            if (!ti) fail("unknown ggml type id " + std::to_string(t.type), nm);
            if (t.ne[0] % ti->block_elems != 0)
                fail("ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of " + ti->name + "'s block of " +
                         std::to_string(ti->block_elems), nm);
            const uint64_t blocks = uint64_t(numel) / uint64_t(ti->block_elems);
            if (__builtin_mul_overflow(blocks, uint64_t(ti->block_bytes), &t.nbytes) || t.nbytes > uint64_t(INT64_MAX))
                fail("data size overflows", nm);
            t.offset = scalar<uint64_t>("data offset", nm);
            if (t.offset % f.alignment_ != 0)
                fail("data offset " + n2s(t.offset) + " is not a multiple of the alignment " + n2s(f.alignment_), nm);
            f.tensors_.push_back(std::move(t));
        }

        // The data section starts at the header's end rounded up to the alignment (past the file's
        // end only when there is no data).
        f.data_offset_ = (pos + f.alignment_ - 1) / f.alignment_ * f.alignment_;
        const uint64_t avail = f.data_offset_ <= size ? size - f.data_offset_ : 0;
        for (auto& t : f.tensors_) {
            if (t.offset > avail || t.nbytes > avail - t.offset)
                fail("data [" + n2s(t.offset) + ", " + (t.offset > UINT64_MAX - t.nbytes ? "2^64+" : n2s(t.offset + t.nbytes)) +
                         ") of the data section at byte " + n2s(f.data_offset_) + " is outside the file (" + n2s(size) +
                         " bytes): truncated?", t.name);
            t.data = base + f.data_offset_ + t.offset;
        }
        // No two tensors share bytes.
        std::vector<const GgufTensor*> by_offset;
        by_offset.reserve(f.tensors_.size());
        for (const auto& t : f.tensors_) by_offset.push_back(&t);
        std::sort(by_offset.begin(), by_offset.end(), [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
        for (size_t k = 1; k < by_offset.size(); ++k) {
            const GgufTensor& a = *by_offset[k - 1];
            const GgufTensor& b = *by_offset[k];
            if (b.offset < a.offset + a.nbytes)
                fail("data at offset " + n2s(b.offset) + " overlaps tensor '" + a.name + "' [" + n2s(a.offset) + ", " +
                         n2s(a.offset + a.nbytes) + ")", b.name);
        }
    }
};

GgufFile::~GgufFile() {
    if (map_) {
        Mapping m{map_, size_};
        unmap(m);
    }
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> f(new GgufFile());
    f->path_ = path;
    Mapping m = map_readonly(path, 4, "a GGUF file's magic");
    f->map_ = m.data;
    f->size_ = m.size;
    GgufParser p{*f, static_cast<const uint8_t*>(m.data), m.size};
    p.parse();
    return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufType::String) throw Error(path_, "", "metadata '" + key + "' has type " + v->type_text() + ", expected a STRING");
    return v->str;
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    switch (v->type) {
        case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64: case GgufType::Bool:
            if (v->u > uint64_t(INT64_MAX)) throw Error(path_, "", "metadata '" + key + "' = " + n2s(v->u) + " does not fit in int64");
            return int64_t(v->u);
        case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return v->i;
        default: throw Error(path_, "", "metadata '" + key + "' has type " + v->type_text() + ", expected an integer");
    }
}

double GgufFile::get_float(const std::string& key, double fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type == GgufType::String || v->type == GgufType::Array || v->type == GgufType::Bool)
        throw Error(path_, "", "metadata '" + key + "' has type " + v->type_text() + ", expected a number");
    return v->f;
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufType::Bool) throw Error(path_, "", "metadata '" + key + "' has type " + v->type_text() + ", expected a BOOL");
    return v->u != 0;
}

void GgufFile::read_f32(const GgufTensor& t, float* out, bool check_finite) const {
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti || !ti->readable)
        throw Error(path_, t.name, "type " + ggml_type_name(t.type) +
                                       " cannot be read exactly; LoftQ Studio reads F32, F16, BF16 and Q8_0");
    const auto* base = static_cast<const uint8_t*>(map_);
    const int64_t n = int64_t(t.numel());
    if (!t.data || t.data < base || uint64_t(t.data - base) > size_ || t.nbytes > size_ - uint64_t(t.data - base) ||
        ggml_row_bytes(t.type, n) != t.nbytes)
        throw Error(path_, t.name, "tensor is not one of this file's");
    ggml_dequantize_row(t.type, t.data, out, n);
    if (!check_finite) return;
    int64_t first = -1, bad = 0;
    for (int64_t k = 0; k < n; ++k)
        if (!std::isfinite(out[k])) {
            if (first < 0) first = k;
            ++bad;
        }
    if (first >= 0) {
        std::string where = "value " + std::to_string(first);
        if (ti->block_elems > 1) where += " (block " + std::to_string(first / ti->block_elems) + ")";
        throw Error(path_, t.name, std::to_string(bad) + " of " + std::to_string(n) + " values are NaN or Inf; the first is " + where +
                                       " = " + (std::isnan(out[first]) ? "NaN" : out[first] > 0 ? "+Inf" : "-Inf"));
    }
}

std::vector<float> GgufFile::read_f32(const GgufTensor& t, bool check_finite) const {
    std::vector<float> out;
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (ti && ti->readable) out.resize(size_t(t.numel()));  // else the call below names the type
    read_f32(t, out.data(), check_finite);
    return out;
}

void GgufFile::release(const GgufTensor& t) const {
    release_pages(t.data, t.nbytes);
}

}  // namespace loftq
