// packed_reader.h: the packed LoftQ safetensors format (docs/FORMAT.md, "Packed LoftQ
// safetensors") — its names, the double quantization of block scales — and its reader: open a
// packed export (folder, sharded or not, or one .safetensors file), list the quantized weights
// with quantizer / block / shape, read their codes and scales, dequantize a weight into fp32
// exactly as the engine computed Q (table[code] * scale, the quantizer's own dequantize).
// Everything structural is validated at open (metadata, presence, dtypes and sizes of every
// tensor a weight needs, zero padding bits after the last code); values are checked when read
// (codes below the format's level count, scales finite and >= 0). Every problem throws
// loftq::Error naming the file and the tensor ("__metadata__" for the header metadata).
// Writing is the exporter's job (export/packed.h); this file has no engine dependencies
// beyond core, quant and io.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/quantizer.h"

namespace loftq {

namespace packed {
inline constexpr const char* kFormat = "loftq-packed";   // __metadata__["format"]
inline constexpr const char* kVersion = "1";             // __metadata__["format_version"]
inline constexpr size_t kScaleBlock = 256;               // double quantization: scales per absmax
// Tensor name suffixes appended to a quantized weight's name.
inline constexpr const char* kCodes = ".qcodes";                  // U8 [ceil(numel k / 8)]
inline constexpr const char* kScales = ".qscales";                // F32 [nblocks]
inline constexpr const char* kScalesQ = ".qscales_q";             // U8 [nblocks]          (double quant)
inline constexpr const char* kScalesAbsmax = ".qscales_absmax";   // F32 [ceil(nblocks/256)] (double quant)
inline constexpr const char* kScalesOffset = ".qscales_offset";   // F32 [1]               (double quant)

inline size_t dq_blocks(size_t nblocks) { return (nblocks + kScaleBlock - 1) / kScaleBlock; }
// Bytes of the scales of `nblocks` blocks, plain or double-quantized.
inline uint64_t scale_bytes(size_t nblocks, bool double_quant) {
    return double_quant ? uint64_t(nblocks) + 4 * uint64_t(dq_blocks(nblocks)) + 4 : 4 * uint64_t(nblocks);
}

// Double quantization of n block scales s (fp32, >= 0):
//   offset = fp32(mean of s in float64); c_i = s_i - offset (fp32);
//   per group j of 256 consecutive scales: a_j = max |c_i| (fp32);
//   q_i = 128 + clamp(round_half_even(c_i / a_j * 127), -127, 127)  (fp32 ops; q_i = 128 when a_j = 0).
// absmax: dq_blocks(n) floats.
void dq_quantize_scales(const float* s, size_t n, uint8_t* q, float* absmax, float* offset);
// s'_i = max(0, float(q_i - 128) * (a_j / 127) + offset), each operation in fp32, no fused
// multiply-add; this is the definition readers must reproduce.
void dq_dequantize_scales(const uint8_t* q, const float* absmax, float offset, size_t n, float* out);
}  // namespace packed

// True when a checkpoint's tensors are a packed export's (some `<name>.qcodes`): headers only.
bool is_packed_checkpoint(const Checkpoint& ck);
// True when tensor `name` is one of a packed export's own (codes, scales, or LoRA factors stored
// beside them) rather than a tensor of the model.
bool is_packed_part(const std::string& name);

struct PackedWeight {
    std::string name;                  // source tensor name, e.g. "model.layers.0.mlp.up_proj.weight"
    QuantKind quant = QuantKind::NF4;
    int bits = 4, block = 64;
    int64_t rows = 0, cols = 0;        // the weight's shape (out x in, as in the source)
    DType dtype = DType::BF16;         // the source dtype (unpack writes Q in it)
    bool double_quant = false;
    int rank = 0;                      // LoRA rank of its factors (0: none)
    double lora_alpha = 0;
    size_t numel() const { return size_t(rows) * size_t(cols); }
    size_t nblocks() const { return num_blocks(numel(), block); }
};

class PackedReader {
public:
    // `path`: an export folder (model.safetensors or model.safetensors.index.json + shards) or
    // one packed .safetensors file. Throws loftq::Error on any structural problem.
    static std::unique_ptr<PackedReader> open(const std::string& path);
    ~PackedReader();

    const std::string& dir() const { return dir_; }                      // folder holding the files
    const std::vector<std::string>& files() const { return paths_; }     // data files (absolute)
    const std::vector<PackedWeight>& weights() const { return weights_; }  // in source tensor order
    const PackedWeight* weight(const std::string& name) const;            // nullptr if not quantized
    // Every source tensor name in source order (targets and copied tensors): the backbone order.
    const std::vector<std::string>& tensor_order() const { return order_; }
    uint64_t max_shard_bytes() const { return max_shard_; }
    const nlohmann::json& plan() const { return plan_; }                  // the plan JSON (may be null)

    // A stored tensor by name (nullptr when absent); `file` receives the file holding it.
    const TensorInfo* tensor(const std::string& name, const SafetensorsFile** file = nullptr) const;
    const uint8_t* data(const std::string& name) const;                   // its bytes; throws when absent

    std::vector<uint8_t> codes(const PackedWeight& w) const;   // numel codes, one byte each
    std::vector<float> scales(const PackedWeight& w) const;    // nblocks scales (after double dequant)
    std::vector<float> dequantize(const PackedWeight& w) const;  // rows x cols fp32 = the engine's Q
    uint64_t stored_bytes(const PackedWeight& w) const;        // bytes of its codes + scales tensors

private:
    PackedReader() = default;
    std::string dir_;
    std::vector<std::string> paths_;
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::vector<std::pair<std::string, size_t>> where_;  // sorted tensor name -> file index
    std::vector<PackedWeight> weights_;
    std::vector<std::string> order_;
    uint64_t max_shard_ = 0;
    nlohmann::json plan_;
    void validate_weight(const PackedWeight& w) const;
    const std::string& file_of(const std::string& tensor) const;  // file holding it, else the first
};

}  // namespace loftq
