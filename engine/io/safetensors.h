// safetensors.h: a memory-mapped, bounds-checked safetensors reader and an atomic,
// out-of-order safetensors writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
// then the data section; offsets are relative to its start. The reader checks: file at least 8
// bytes; N within the file and below 100 MB; JSON parses to an object; every entry has a known
// layout (dtype string, shape of non-negative ints, two offsets with begin <= end); end - begin ==
// numel * dtype size (for known dtypes); every range inside the data section; ranges do not overlap.
// Any failure throws loftq::Error naming the file (and tensor). Unknown dtype strings are kept as
// DType::Unknown (listed, copied, never converted).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace loftq {

struct TensorInfo {
    std::string name;
    DType dtype = DType::Unknown;
    std::string dtype_str;        // as written in the file (kept for unknown dtypes)
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte range relative to the data section
    uint64_t numel() const { uint64_t n = 1; for (auto d : shape) n *= uint64_t(d); return n; }
    uint64_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
public:
    // Maps the file read-only; throws loftq::Error on any problem listed above.
    static std::unique_ptr<SafetensorsFile> open(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return size_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order of offsets
    const TensorInfo* find(const std::string& name) const;               // nullptr if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    // Pointer to the tensor's bytes inside the mapping (valid while this object lives).
    const uint8_t* data(const TensorInfo& t) const { return data_ + t.begin; }

private:
    SafetensorsFile() = default;
    std::string path_;
    uint64_t size_ = 0;
    void* map_ = nullptr;
    const uint8_t* data_ = nullptr;  // start of the data section
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

struct OutTensor {
    std::string name;
    DType dtype = DType::F32;
    std::string dtype_str;        // used when dtype == Unknown (copying unknown types through)
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;          // numel * dtype size, or the source size for unknown dtypes
};

// Writes one safetensors file whose layout (names, dtypes, shapes; offsets in the given order)
// is fixed up front, so tensors can be written in any order from any thread as they finish,
// keeping memory bounded. Data goes to `<path>.partial`; finish() checks that every tensor was
// written, fsyncs and closes; commit() renames the partial file to `path`. Destroying a writer
// that was not committed removes the partial file. Write errors (disk full) throw loftq::Error.
class SafetensorsWriter {
public:
    SafetensorsWriter(std::string path, std::vector<OutTensor> layout,
                      std::map<std::string, std::string> metadata = {});
    ~SafetensorsWriter();
    SafetensorsWriter(const SafetensorsWriter&) = delete;
    SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

    // Thread-safe; nbytes must equal the layout's nbytes for that tensor; each tensor once.
    void write(const std::string& name, const void* bytes, uint64_t nbytes);
    void finish();
    void commit();
    // finish(), then hand the finished partial file to the caller (who renames it into place as
    // part of a larger commit, or removes it): returns its path; the writer no longer owns it.
    std::string release_partial();
    const std::string& path() const { return path_; }
    uint64_t total_bytes() const { return total_; }
    bool has(const std::string& name) const { return index_.count(name) != 0; }

private:
    struct Impl;
    std::string path_, partial_;
    int fd_ = -1;
    uint64_t data_start_ = 0, total_ = 0;
    std::vector<OutTensor> layout_;
    std::vector<uint64_t> offsets_;
    std::vector<char> written_;
    std::map<std::string, size_t> index_;
    bool finished_ = false, committed_ = false;
    void* mutex_ = nullptr;  // std::mutex*, kept out of the header
};

// Bytes the serialized header of this layout takes (8-byte length + JSON, padded to 8).
uint64_t safetensors_header_size(const std::vector<OutTensor>& layout, const std::map<std::string, std::string>& metadata);

}  // namespace loftq
