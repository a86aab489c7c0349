// cuda_check.h: LOFTQ_CUDA_CHECK(expr) runs a CUDA runtime call and throws loftq::Error naming
// the file, line, the call and the CUDA error when it does not return cudaSuccess (llm.c
// `llmc/cuda_common.h`, but throwing instead of exiting: a library never exits).
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "core/error.h"

namespace loftq {

inline void cuda_check(cudaError_t e, const char* expr, const char* file, int line) {
    if (e == cudaSuccess) return;
    throw Error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " + cudaGetErrorName(e) +
                " (" + cudaGetErrorString(e) + ")");
}

}  // namespace loftq

#define LOFTQ_CUDA_CHECK(expr) ::loftq::cuda_check((expr), #expr, __FILE__, __LINE__)
