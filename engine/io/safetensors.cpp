// safetensors.cpp: the bounds-checked, memory-mapped safetensors reader and the atomic,
// out-of-order writer declared in safetensors.h.
// Leaves out: dtype conversion (core/dtype), sharded indexes and config.json (checkpoint.cpp).
// Every failure is a loftq::Error naming the file and, where there is one, the tensor.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_read.h"
#include "core/mapped_file.h"

namespace loftq {

namespace {

constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;  // 100 MB, as the reference implementation

std::string errno_text(int e) { return std::string(std::strerror(e)); }

// Name of a JSON value's type, for "must be X, got Y" messages.
std::string json_type(const nlohmann::json& j) { return j.type_name(); }

// Reads a non-negative integer from JSON (accepts integral floats such as 4.0, which some
// writers emit); false if it is not one.
bool json_uint(const nlohmann::json& j, uint64_t& out, bool& negative) {
    negative = false;
    if (j.is_number_unsigned()) { out = j.get<uint64_t>(); return true; }
    if (j.is_number_integer()) {
        int64_t v = j.get<int64_t>();
        if (v < 0) { negative = true; return false; }
        out = uint64_t(v);
        return true;
    }
    if (j.is_number_float()) {
        double d = j.get<double>();
        if (d < 0) { negative = true; return false; }
        // Range first: converting a double beyond uint64's range (or NaN) is undefined behaviour.
        if (!(d <= 9.0e18) || d != double(uint64_t(d))) return false;
        out = uint64_t(d);
        return true;
    }
    return false;
}

// The serialized header (JSON padded with spaces so that 8 + its length is a multiple of 8) for
// a layout, with data offsets assigned in layout order. `offsets` receives each tensor's begin.
std::string build_header(const std::vector<OutTensor>& layout,
                         const std::map<std::string, std::string>& metadata,
                         std::vector<uint64_t>* offsets, uint64_t* data_bytes) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
        h["__metadata__"] = std::move(m);
    }
    uint64_t off = 0;
    if (offsets) offsets->clear();
    for (const auto& t : layout) {
        nlohmann::ordered_json e = nlohmann::ordered_json::object();
        e["dtype"] = t.dtype == DType::Unknown ? t.dtype_str : std::string(dtype_name(t.dtype));
        e["shape"] = t.shape;
        e["data_offsets"] = {off, off + t.nbytes};
        h[t.name] = std::move(e);
        if (offsets) offsets->push_back(off);
        off += t.nbytes;
    }
    if (data_bytes) *data_bytes = off;
    std::string s = h.dump();
    s.append((8 - s.size() % 8) % 8, ' ');
    return s;
}

// pwrite of all `n` bytes at `off`, retrying short writes and EINTR; returns 0 or an errno.
int pwrite_all(int fd, const void* buf, uint64_t n, uint64_t off) {
    const auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
        size_t chunk = size_t(std::min<uint64_t>(n, uint64_t(1) << 30));
        ssize_t w = ::pwrite(fd, p, chunk, off_t(off));
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        n -= uint64_t(w);
        off += uint64_t(w);
    }
    return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, size_t(size_));
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
    f->path_ = path;

    Mapping mp = map_readonly(path, 8, "the 8-byte header length");
    void* m = mp.data;
    const uint64_t size = mp.size;
    f->map_ = m;
    f->size_ = size;
    const auto* base = static_cast<const uint8_t*>(m);

    // 8-byte little-endian header length.
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
    if (n > size - 8)
        throw Error(path, "", "header length " + std::to_string(n) + " exceeds the file (" +
                                  std::to_string(size) + " bytes): truncated or not a safetensors file");
    if (n > kMaxHeader)
        throw Error(path, "", "header length " + std::to_string(n) + " exceeds the 100 MB limit");
    if (n < 2)
        throw Error(path, "", "header length " + std::to_string(n) +
                                  " is too small for a JSON object (at least '{}')");

    // Some writers pad with NULs instead of spaces; trailing padding is not part of the JSON.
    const char* hb = reinterpret_cast<const char*>(base + 8);
    size_t hl = size_t(n);
    while (hl > 0 && (hb[hl - 1] == '\0' || hb[hl - 1] == ' ')) --hl;
    // Depth-limited, duplicate names refused (a repeated tensor name is ambiguous: which one the
    // reader gets would depend on the parser).
    const nlohmann::json h = parse_json_checked(std::string_view(hb, hl), path, "header");
    if (!h.is_object()) throw Error(path, "", "header JSON is a " + json_type(h) + ", expected an object");

    const uint64_t data_size = size - 8 - n;
    f->data_ = base + 8 + n;

    for (auto it = h.begin(); it != h.end(); ++it) {
        const std::string& name = it.key();
        const auto& e = it.value();
        if (name == "__metadata__") {
            if (!e.is_object()) throw Error(path, "", "__metadata__ is a " + json_type(e) + ", expected an object of strings");
            for (auto m2 = e.begin(); m2 != e.end(); ++m2) {
                if (!m2.value().is_string())
                    throw Error(path, "", "__metadata__ entry '" + m2.key() + "' is a " + json_type(m2.value()) +
                                              ", expected a string");
                f->metadata_[m2.key()] = m2.value().get<std::string>();
            }
            continue;
        }
        if (!e.is_object()) throw Error(path, name, "entry is a " + json_type(e) + ", expected an object");
        auto dt = e.find("dtype");
        auto sh = e.find("shape");
        auto of = e.find("data_offsets");
        if (dt == e.end()) throw Error(path, name, "entry has no 'dtype'");
        if (sh == e.end()) throw Error(path, name, "entry has no 'shape'");
        if (of == e.end()) throw Error(path, name, "entry has no 'data_offsets'");
        if (!dt->is_string()) throw Error(path, name, "'dtype' is a " + json_type(*dt) + ", expected a string");
        if (!sh->is_array()) throw Error(path, name, "'shape' is a " + json_type(*sh) + ", expected an array");
        if (!of->is_array() || of->size() != 2)
            throw Error(path, name, "'data_offsets' must be an array of two integers [begin, end]");

        TensorInfo t;
        t.name = name;
        t.dtype_str = dt->get<std::string>();
        t.dtype = dtype_from_name(t.dtype_str);
        uint64_t numel = 1;
        bool numel_overflow = false;
        for (size_t d = 0; d < sh->size(); ++d) {
            uint64_t v = 0;
            bool neg = false;
            if (!json_uint((*sh)[d], v, neg))
                throw Error(path, name, neg ? "shape has a negative dimension (" + (*sh)[d].dump() + ")"
                                            : "shape entry " + (*sh)[d].dump() + " is not a non-negative integer");
            if (v > uint64_t(INT64_MAX)) throw Error(path, name, "shape dimension " + std::to_string(v) + " is too large");
            t.shape.push_back(int64_t(v));
            if (__builtin_mul_overflow(numel, v, &numel)) numel_overflow = true;
        }
        uint64_t b = 0, en = 0;
        bool neg = false;
        if (!json_uint((*of)[0], b, neg) || !json_uint((*of)[1], en, neg))
            throw Error(path, name, "'data_offsets' " + of->dump() + " must be two non-negative integers");
        if (b > en)
            throw Error(path, name, "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                                        "]: begin is after end");
        t.begin = b;
        t.end = en;
        if (t.dtype != DType::Unknown) {
            uint64_t want = 0;
            if (numel_overflow || __builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &want))
                throw Error(path, name, "shape is too large (element count overflows)");
            if (want != en - b)
                throw Error(path, name, "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] hold " +
                                            std::to_string(en - b) + " bytes but " + t.dtype_str + " shape " +
                                            sh->dump() + " needs " + std::to_string(want));
        }
        if (en > data_size)
            throw Error(path, name, "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                                        "] out of bounds: the data section is " + std::to_string(data_size) +
                                        " bytes (file is " + std::to_string(size) + " bytes; truncated?)");
        f->tensors_.push_back(std::move(t));
    }

    // Listed by offset; then no two non-empty ranges may overlap.
    std::sort(f->tensors_.begin(), f->tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    const TensorInfo* last = nullptr;  // the non-empty range reaching furthest so far
    for (const auto& t : f->tensors_) {
        if (t.nbytes() == 0) continue;
        if (last && t.begin < last->end)
            throw Error(path, t.name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                          "] overlap tensor '" + last->name + "' [" + std::to_string(last->begin) +
                                          ", " + std::to_string(last->end) + "]");
        if (!last || t.end > last->end) last = &t;
    }
    for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
    return f;
}

// ---------------------------------------------------------------------------------------------
// Writer

uint64_t safetensors_header_size(const std::vector<OutTensor>& layout,
                                 const std::map<std::string, std::string>& metadata) {
    return 8 + build_header(layout, metadata, nullptr, nullptr).size();
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<OutTensor> layout,
                                     std::map<std::string, std::string> metadata)
    : path_(std::move(path)), layout_(std::move(layout)) {
    partial_ = path_ + ".partial";
    for (size_t i = 0; i < layout_.size(); ++i) {
        auto& t = layout_[i];
        if (t.name.empty() || t.name == "__metadata__")
            throw Error(path_, t.name, "invalid tensor name for the output layout");
        if (!index_.emplace(t.name, i).second) throw Error(path_, t.name, "tensor listed twice in the output layout");
        uint64_t numel = 1;
        for (auto d : t.shape) {
            if (d < 0) throw Error(path_, t.name, "negative dimension in the output layout");
            numel *= uint64_t(d);
        }
        if (t.dtype == DType::Unknown) {
            if (t.dtype_str.empty()) throw Error(path_, t.name, "unknown dtype with no dtype string");
        } else {
            uint64_t want = numel * dtype_size(t.dtype);
            if (t.nbytes == 0) t.nbytes = want;  // convenience: callers may leave it to us
            if (t.nbytes != want)
                throw Error(path_, t.name, "layout nbytes " + std::to_string(t.nbytes) + " != numel * " +
                                               dtype_name(t.dtype) + " size (" + std::to_string(want) + ")");
        }
    }
    uint64_t data_bytes = 0;
    std::string header = build_header(layout_, metadata, &offsets_, &data_bytes);
    data_start_ = 8 + header.size();
    total_ = data_start_ + data_bytes;
    written_.assign(layout_.size(), 0);

    fd_ = ::open(partial_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(path_, "", "cannot create " + partial_ + ": " + errno_text(errno));
    uint8_t len[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    int e = pwrite_all(fd_, len, 8, 0);
    if (!e) e = pwrite_all(fd_, header.data(), header.size(), 8);
    if (!e && ::ftruncate(fd_, off_t(total_)) != 0) e = errno;
    if (e) {
        ::close(fd_);
        fd_ = -1;
        ::unlink(partial_.c_str());
        throw Error(path_, "", "cannot write the header (" + std::to_string(total_) + " bytes planned): " + errno_text(e));
    }
    mutex_ = new std::mutex();
}

SafetensorsWriter::~SafetensorsWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(partial_.c_str());
    delete static_cast<std::mutex*>(mutex_);
}

// written_ states: 0 = not yet, 1 = being written by some thread, 2 = done.
void SafetensorsWriter::write(const std::string& name, const void* bytes, uint64_t nbytes) {
    auto& mu = *static_cast<std::mutex*>(mutex_);
    size_t i = 0;
    {
        std::lock_guard<std::mutex> lock(mu);
        auto it = index_.find(name);
        if (it == index_.end()) throw Error(path_, name, "tensor is not in the output layout");
        i = it->second;
        if (finished_) throw Error(path_, name, "write after finish()");
        if (fd_ < 0) throw Error(path_, name, "file is closed");
        if (nbytes != layout_[i].nbytes)
            throw Error(path_, name, "got " + std::to_string(nbytes) + " bytes, layout says " +
                                            std::to_string(layout_[i].nbytes));
        if (written_[i] != 0) throw Error(path_, name, "tensor written twice");
        written_[i] = 1;
    }
    int e = pwrite_all(fd_, bytes, nbytes, data_start_ + offsets_[i]);
    std::lock_guard<std::mutex> lock(mu);
    if (e) {
        written_[i] = 0;
        throw Error(path_, name, "write failed: " + errno_text(e));
    }
    written_[i] = 2;
}

void SafetensorsWriter::finish() {
    auto& mu = *static_cast<std::mutex*>(mutex_);
    std::lock_guard<std::mutex> lock(mu);
    if (finished_) return;
    for (size_t i = 0; i < layout_.size(); ++i)
        if (written_[i] != 2) {
            size_t missing = size_t(std::count_if(written_.begin(), written_.end(), [](char c) { return c != 2; }));
            throw Error(path_, layout_[i].name, "tensor was never written (" + std::to_string(missing) +
                                                       " of " + std::to_string(layout_.size()) + " missing)");
        }
    if (fd_ < 0) throw Error(path_, "", "file is closed");
    if (::fsync(fd_) != 0) throw Error(path_, "", "fsync failed: " + errno_text(errno));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) throw Error(path_, "", "close failed: " + errno_text(errno));
    finished_ = true;
}

std::string SafetensorsWriter::release_partial() {
    finish();
    committed_ = true;  // no longer ours to remove
    return partial_;
}

void SafetensorsWriter::commit() {
    if (committed_) return;
    finish();
    if (::rename(partial_.c_str(), path_.c_str()) != 0)
        throw Error(path_, "", "cannot rename " + partial_ + " into place: " + errno_text(errno));
    committed_ = true;
    // Make the rename itself durable.
    std::string dir = std::filesystem::path(path_).parent_path().string();
    if (dir.empty()) dir = ".";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace loftq
