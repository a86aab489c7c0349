// out_of_memory.h: an out of memory that says what was being allocated. rethrow_naming
// (core/error.h) turns std::bad_alloc into "FILE: tensor 'T': out of memory"; the places that
// allocate per tensor outside the quantize job (loading a model for fine-tune, eval or
// calibration, the sensitivity sweep, the trainer's buffers) also say how much they asked for, so
// that a user can tell one absurd tensor from a machine that is simply too small:
//   "model.safetensors: tensor 'model.embed_tokens.weight': out of memory allocating 1.07 GB
//    (fp32, 131072 x 2048)"
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

// "1.07 GB (fp32, 131072 x 2048)": the bytes of a fp32 copy of a tensor of this shape.
std::string fp32_size_text(const std::vector<int64_t>& shape);
// The message's detail: "out of memory allocating " + what.
std::string out_of_memory_text(const std::string& what);

// Inside a catch block of work on one tensor whose fp32 copy has `shape`: a std::bad_alloc
// becomes loftq::Error(file, tensor, "out of memory allocating <bytes> (fp32, <shape>)");
// anything else goes through rethrow_naming(file, tensor).
[[noreturn]] void rethrow_naming_size(const std::string& file, const std::string& tensor, const std::vector<int64_t>& shape);

}  // namespace loftq
