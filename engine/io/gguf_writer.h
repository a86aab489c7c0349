// gguf_writer.h: writes one GGUF file (version 3, little-endian) from metadata key/values and
// tensors whose fp32 values are produced on demand, one tensor at a time, so that memory holds
// at most one tensor (plus its encoded bytes) however large the model.
//
// Tensors are stored as F32, F16, BF16 or Q8_0 (ggml's reference quantizer,
// quant/ggml_types.h). The file is written to `<path>.partial` and renamed into place only when
// complete: an error or a cancel leaves no file (and an existing file at `path` untouched).
// Output is deterministic: the same calls give the same bytes.
// Leaves out: reading (io/gguf.h), other quantized types, choosing GGUF key and tensor names for
// a model (the export command's job), splitting into shards.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/cancel.h"

namespace loftq {

class GgufWriter {
public:
    // alignment: of the data section and every tensor's offset; a power of two (else loftq::Error).
    // When it is not 32 (GGUF's default) the writer emits the general.alignment KV itself.
    explicit GgufWriter(uint32_t alignment = 32);

    // Metadata, written in the order added. A key added twice throws loftq::Error naming it.
    // "general.alignment" may be added only as add_u32 with the constructor's alignment.
    void add_string(const std::string& key, const std::string& v);
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_f32(const std::string& key, float v);
    void add_bool(const std::string& key, bool v);
    void add_strings(const std::string& key, const std::vector<std::string>& v);
    void add_f32s(const std::string& key, const std::vector<float>& v);
    void add_i32s(const std::string& key, const std::vector<int32_t>& v);
    // Also: the other scalar types, for copying metadata through.
    void add_u64(const std::string& key, uint64_t v);
    void add_i64(const std::string& key, int64_t v);
    void add_f64(const std::string& key, double v);

    // A tensor with row-major `shape` ((out, in) for a weight; written as ne reversed), stored as
    // `type` (F32, F16, BF16 or Q8_0; Q8_0 needs shape.back() % 32 == 0), 1 to 4 dimensions, each
    // positive. `fill` writes its numel fp32 values when the writer gets to it. Any violation, or
    // a name added twice, throws loftq::Error naming the tensor.
    // Q8_0 refuses (at write) NaN/Inf values and blocks whose scale overflows fp16
    // (max|x| >= 65520 * 127); the other types store any value as it converts.
    void add_tensor(const std::string& name, std::vector<int64_t> shape, uint32_t type, std::function<void(float* dst)> fill);

    // Header, then each tensor's data in order, each at an aligned offset. Atomic (see above).
    // progress(done_tensors, total) after each tensor; cancel polled before each (loftq::Cancelled).
    // Errors (disk full, a fill that throws, ...) are loftq::Error naming the output file (and the
    // tensor being written).
    void write(const std::string& path, const std::function<void(size_t, size_t)>& progress = {}, const CancelToken* cancel = nullptr) const;

    size_t tensor_count() const { return tensors_.size(); }
    size_t kv_count() const { return kvs_.size(); }

private:
    struct Kv { std::string key; std::string bytes; };  // bytes: value type + value, serialized
    struct Tensor {
        std::string name;
        std::vector<int64_t> shape;  // row-major
        uint32_t type;
        uint64_t nbytes;
        std::function<void(float*)> fill;
    };
    void add_kv(const std::string& key, std::string bytes);
    uint32_t alignment_;
    std::vector<Kv> kvs_;
    std::vector<Tensor> tensors_;
};

}  // namespace loftq
