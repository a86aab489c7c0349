// gguf_writer.cpp: the GGUF writer declared in gguf_writer.h: serializes the key/values and
// tensor infos, then streams each tensor (fill -> encode in chunks -> write) into a partial file
// that StagedOutput renames into place at the end.
#include "io/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/gguf.h"
#include "quant/ggml_types.h"

namespace loftq {

namespace {

constexpr uint32_t kDefaultAlignment = 32;
constexpr int64_t kChunkElems = int64_t(1) << 20;  // values encoded per write: 4 MiB of fp32, a multiple of 32

// Little-endian serialization (the host is little-endian: x86-64, aarch64).
template <class T>
void put(std::string& s, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
}
void put_str(std::string& s, const std::string& v) {
    put<uint64_t>(s, v.size());
    s += v;
}
std::string typed(GgufType t) {
    std::string s;
    put<uint32_t>(s, uint32_t(t));
    return s;
}
template <class T>
std::string scalar_kv(GgufType t, T v) {
    std::string s = typed(t);
    put<T>(s, v);
    return s;
}
template <class T>
std::string array_kv(GgufType elem, const std::vector<T>& v) {
    std::string s = typed(GgufType::Array);
    put<uint32_t>(s, uint32_t(elem));
    put<uint64_t>(s, v.size());
    for (const T& x : v) put<T>(s, x);
    return s;
}

uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Sequential writes to one file descriptor, buffered; every failure names the output file.
class Sink {
public:
    Sink(std::string final_path, const std::string& partial) : path_(std::move(final_path)) {
        fd_ = ::open(partial.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd_ < 0) throw Error(path_, "", "cannot create " + partial + ": " + std::strerror(errno));
        buf_.reserve(kBuf);
    }
    ~Sink() {
        if (fd_ >= 0) ::close(fd_);
    }
    void write(const void* p, size_t n) {
        const auto* c = static_cast<const char*>(p);
        while (n > 0) {
            size_t take = std::min(n, kBuf - buf_.size());
            buf_.append(c, take);
            c += take;
            n -= take;
            pos_ += take;
            if (buf_.size() == kBuf) flush();
        }
    }
    void zeros(uint64_t n) {
        static const char z[64] = {};
        while (n > 0) {
            size_t take = size_t(std::min<uint64_t>(n, sizeof z));
            write(z, take);
            n -= take;
        }
    }
    uint64_t pos() const { return pos_; }
    void flush() {
        size_t off = 0;
        while (off < buf_.size()) {
            ssize_t w = ::write(fd_, buf_.data() + off, buf_.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) throw Error(path_, "", std::string("write failed: ") + std::strerror(w < 0 ? errno : EIO));
            off += size_t(w);
        }
        buf_.clear();
    }
    void finish() {  // flush, fsync, close: the bytes are on disk before the rename
        flush();
        if (::fsync(fd_) != 0) throw Error(path_, "", std::string("fsync failed: ") + std::strerror(errno));
        int rc = ::close(fd_);
        fd_ = -1;
        if (rc != 0) throw Error(path_, "", std::string("close failed: ") + std::strerror(errno));
    }

private:
    static constexpr size_t kBuf = size_t(4) << 20;
    std::string path_;
    int fd_ = -1;
    std::string buf_;
    uint64_t pos_ = 0;
};

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw Error("", "", "GGUF alignment " + std::to_string(alignment) + " is not a power of two");
}

void GgufWriter::add_kv(const std::string& key, std::string bytes) {
    for (const Kv& k : kvs_)
        if (k.key == key) throw Error("", "", "GGUF metadata key '" + key + "' added twice");
    if (key == "general.alignment") {  // must agree with the layout the writer uses
        uint32_t v = 0;
        if (bytes.size() == 8) std::memcpy(&v, bytes.data() + 4, 4);
        if (bytes.size() != 8 || bytes.substr(0, 4) != typed(GgufType::U32) || v != alignment_)
            throw Error("", "", "GGUF metadata 'general.alignment' must be the UINT32 " + std::to_string(alignment_) +
                                    " given to the writer (set the alignment in GgufWriter's constructor)");
    }
    kvs_.push_back({key, std::move(bytes)});
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
    std::string s = typed(GgufType::String);
    put_str(s, v);
    add_kv(key, std::move(s));
}
void GgufWriter::add_u32(const std::string& key, uint32_t v) { add_kv(key, scalar_kv(GgufType::U32, v)); }
void GgufWriter::add_i32(const std::string& key, int32_t v) { add_kv(key, scalar_kv(GgufType::I32, v)); }
void GgufWriter::add_f32(const std::string& key, float v) { add_kv(key, scalar_kv(GgufType::F32, v)); }
void GgufWriter::add_bool(const std::string& key, bool v) { add_kv(key, scalar_kv(GgufType::Bool, uint8_t(v ? 1 : 0))); }
void GgufWriter::add_u64(const std::string& key, uint64_t v) { add_kv(key, scalar_kv(GgufType::U64, v)); }
void GgufWriter::add_i64(const std::string& key, int64_t v) { add_kv(key, scalar_kv(GgufType::I64, v)); }
void GgufWriter::add_f64(const std::string& key, double v) { add_kv(key, scalar_kv(GgufType::F64, v)); }
void GgufWriter::add_f32s(const std::string& key, const std::vector<float>& v) { add_kv(key, array_kv(GgufType::F32, v)); }
void GgufWriter::add_i32s(const std::string& key, const std::vector<int32_t>& v) { add_kv(key, array_kv(GgufType::I32, v)); }
void GgufWriter::add_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string s = typed(GgufType::Array);
    put<uint32_t>(s, uint32_t(GgufType::String));
    put<uint64_t>(s, v.size());
    for (const auto& x : v) put_str(s, x);
    add_kv(key, std::move(s));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> shape, uint32_t type,
                            std::function<void(float* dst)> fill) {
    for (const Tensor& t : tensors_)
        if (t.name == name) throw Error("", name, "GGUF tensor added twice");
    const GgmlTypeInfo* ti = ggml_type_info(type);
    if (!ti || !ti->writable)
        throw Error("", name, "cannot write GGUF tensor type " + ggml_type_name(type) + " (F32, F16, BF16 and Q8_0 are written)");
    if (shape.empty() || shape.size() > 4)
        throw Error("", name, "GGUF tensors have 1 to 4 dimensions, got " + std::to_string(shape.size()));
    int64_t numel = 1;
    for (int64_t d : shape)
        if (d <= 0 || __builtin_mul_overflow(numel, d, &numel))
            throw Error("", name, "GGUF tensor dimensions must be positive and their product fit in int64");
    if (shape.back() % ti->block_elems != 0)
        throw Error("", name, std::string(ti->name) + " needs the last dimension (" + std::to_string(shape.back()) +
                                  ") to be a multiple of " + std::to_string(ti->block_elems));
    if (!fill) throw Error("", name, "GGUF tensor has no fill function");
    const uint64_t nbytes = ggml_row_bytes(type, shape.back()) * uint64_t(numel / shape.back());
    tensors_.push_back({name, std::move(shape), type, nbytes, std::move(fill)});
}

void GgufWriter::write(const std::string& path, const std::function<void(size_t, size_t)>& progress, const CancelToken* cancel) const {
    if (cancel) cancel->throw_if_cancelled();
    // Header: magic, version 3, counts, key/values, tensor infos with offsets in order.
    const bool emit_alignment = alignment_ != kDefaultAlignment &&
                                std::none_of(kvs_.begin(), kvs_.end(), [](const Kv& k) { return k.key == "general.alignment"; });
    std::string h = "GGUF";
    put<uint32_t>(h, 3);
    put<uint64_t>(h, tensors_.size());
    put<uint64_t>(h, kvs_.size() + (emit_alignment ? 1 : 0));
    if (emit_alignment) {
        put_str(h, "general.alignment");
        h += scalar_kv(GgufType::U32, alignment_);
    }
    for (const Kv& k : kvs_) {
        put_str(h, k.key);
        h += k.bytes;
    }
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const Tensor& t : tensors_) {
        put_str(h, t.name);
        put<uint32_t>(h, uint32_t(t.shape.size()));
        for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(h, uint64_t(*d));  // ne: fastest first
        put<uint32_t>(h, t.type);
        put<uint64_t>(h, off);
        offsets.push_back(off);
        off = align_up(off + t.nbytes, alignment_);
    }

    namespace fs = std::filesystem;
    std::string dir = fs::path(path).parent_path().string();
    const std::string file = fs::path(path).filename().string();
    if (file.empty()) throw Error(path, "", "the GGUF output path names no file");
    StagedOutput staged(dir.empty() ? "." : dir);
    std::string partial;
    try {
        partial = staged.stage(file);  // creates missing parent folders
    } catch (const Error& e) {
        throw Error(path, "", e.what());
    }
    Sink out(path, partial);
    out.write(h.data(), h.size());
    out.zeros(align_up(out.pos(), alignment_) - out.pos());
    const uint64_t data_start = out.pos();

    std::vector<float> values;
    std::vector<uint8_t> encoded;
    for (size_t k = 0; k < tensors_.size(); ++k) {
        if (cancel) cancel->throw_if_cancelled();
        const Tensor& t = tensors_[k];
        try {
            int64_t numel = 1;
            for (int64_t d : t.shape) numel *= d;
            values.assign(size_t(numel), 0.0f);
            t.fill(values.data());
            const bool q8 = t.type == ggml_id(GgmlType::Q8_0);
            if (q8)
                for (int64_t i = 0; i < numel; ++i)
                    if (!std::isfinite(values[size_t(i)]))
                        throw Error(path, t.name, "value " + std::to_string(i) + " is " + (std::isnan(values[size_t(i)]) ? "NaN" : "Inf") +
                                                      ", which Q8_0 cannot store");
            out.zeros(data_start + offsets[k] - out.pos());
            for (int64_t b = 0; b < numel; b += kChunkElems) {
                const int64_t n = std::min(kChunkElems, numel - b);
                encoded.resize(size_t(ggml_row_bytes(t.type, n)));
                ggml_quantize_row(t.type, values.data() + b, encoded.data(), n);
                if (q8)  // a scale that overflows fp16 would read back as Inf or NaN
                    for (size_t j = 0; j < encoded.size(); j += sizeof(BlockQ8_0)) {
                        uint16_t d;
                        std::memcpy(&d, encoded.data() + j, 2);
                        if ((d & 0x7c00) == 0x7c00)
                            throw Error(path, t.name, "Q8_0 block " + std::to_string(b / kQK8_0 + int64_t(j / sizeof(BlockQ8_0))) +
                                                          ": max |x| overflows the fp16 scale (must be below 65520 * 127)");
                    }
                out.write(encoded.data(), encoded.size());
            }
        } catch (...) {
            rethrow_naming(path, t.name);
        }
        if (progress) progress(k + 1, tensors_.size());
    }
    out.zeros(align_up(out.pos(), alignment_) - out.pos());  // as gguf-py: the last tensor padded too
    out.finish();
    staged.commit();
}

}  // namespace loftq
