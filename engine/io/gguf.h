// gguf.h: a memory-mapped, bounds-checked reader of GGUF files (llama.cpp's format, versions 2
// and 3, little-endian): metadata key/values, tensor infos, tensor data as fp32.
//
// Layout: "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count; kv_count key/values
// (string key, uint32 value type, value); tensor_count tensor infos (string name, uint32 n_dims,
// uint64 ne[n_dims], uint32 ggml type, uint64 offset); padding to `general.alignment` (default 32);
// the data section, each tensor at its offset from the data section's start. A string is a uint64
// length and that many bytes (no NUL).
//
// open() validates everything up front (see gguf.cpp for the list); every failure is one
// loftq::Error naming the file and, where there is one, the key or tensor. Tensors of any known
// ggml type open (sizes come from the type table, quant/ggml_types.h); read_f32 converts F32,
// F16, BF16 and Q8_0 and refuses the rest naming the type.
// Leaves out: writing (io/gguf_writer.h), mapping GGUF names to a model's (the checkpoint loader),
// big-endian files (refused, saying so), version 1 (refused).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace loftq {

// GGUF metadata value types (gguf.md `gguf_metadata_value_type`).
enum class GgufType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };
const char* gguf_type_name(GgufType t);  // "UINT32", "ARRAY", ...; "?" beyond F64

struct GgufValue {
    GgufType type = GgufType::U8;
    GgufType array_type = GgufType::U8;    // Array only
    uint64_t u = 0; int64_t i = 0; double f = 0;   // numeric and bool scalars fill all three that fit
    std::string str;                       // String
    std::vector<std::string> strs;         // Array of String
    std::vector<double> nums;              // Array of numbers or bools
    uint64_t count = 0;                    // Array: element count (a nested array's elements are skipped, not kept)
    // "UINT32" or "ARRAY of STRING", for messages.
    std::string type_text() const;
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> ne;     // ggml order: ne[0] fastest
    uint32_t type = 0;           // ggml type id
    uint64_t offset = 0;         // from the data section's start
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr;   // mapped
    std::vector<int64_t> shape() const;  // row-major order (ne reversed): (out, in) for a weight
    uint64_t numel() const;
};

class GgufFile {
public:
    static std::unique_ptr<GgufFile> open(const std::string& path);  // mmap; validates everything up front
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t file_size() const { return size_; }
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }  // file order
    const GgufValue* find(const std::string& key) const;
    // Typed getters: absent -> fallback; present with an incompatible type -> Error naming the file and key.
    std::string get_string(const std::string& key, const std::string& fallback = "") const;
    int64_t get_int(const std::string& key, int64_t fallback) const;     // any integer type (and bool)
    double get_float(const std::string& key, double fallback) const;     // any numeric type
    bool get_bool(const std::string& key, bool fallback) const;
    const std::vector<GgufTensor>& tensors() const { return tensors_; }   // file order
    const GgufTensor* find_tensor(const std::string& name) const;
    // numel fp32 values (row-major = the stored order); Error(file, tensor, "...type Q4_K cannot be
    // read exactly; LoftQ Studio reads F32, F16, BF16 and Q8_0") for the rest. check_finite: NaN/Inf
    // -> Error naming the tensor, the first bad index and how many there are.
    void read_f32(const GgufTensor& t, float* out, bool check_finite = true) const;
    std::vector<float> read_f32(const GgufTensor& t, bool check_finite = true) const;
    void release(const GgufTensor& t) const;   // madvise(DONTNEED) hint on its pages

private:
    GgufFile() = default;
    std::string path_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32, data_offset_ = 0, size_ = 0;
    void* map_ = nullptr;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<GgufTensor> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
    friend struct GgufParser;
};

}  // namespace loftq
