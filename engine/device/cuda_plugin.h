// cuda_plugin.h: the CUDA backend as a plugin. Everything that touches CUDA (engine/cuda:
// the LoftQ decomposition and the fine-tuning model and optimizer) is built into one shared
// module, libloftq_cuda.so, which the engine opens with dlopen the first time a device is asked
// about — and only when an NVIDIA driver (libcuda.so.1) can be opened. So the CPU-only paths of
// `loftq`, the app and the tests never map cuBLAS/cuSOLVER (~180 MB of resident pages for merely
// loading them, before any call), and one binary serves machines with and without a GPU
// (ggml's dynamically loaded backends, OBS's plugin modules).
//
// Where the module is looked for, first hit wins: $LOFTQ_CUDA_PLUGIN (a file); beside the
// executable's folder: ../lib/libloftq_cuda.so (the build tree: bin/ and lib/), ../lib/loftq/
// (an install); the executable's folder itself.
// The table crosses the boundary as plain function pointers returning owning raw pointers to
// engine interfaces (WeightDecomposer, DeviceLlama, Optimizer); both sides are built from the
// same sources by the same compiler, and the module keeps its copies of the engine's static
// code private (-Wl,--exclude-libs,ALL). kCudaPluginAbi guards against a stale module.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace loftq {

class WeightDecomposer;
struct WeightSettings;
class LlamaCpu;
class DeviceLlama;
struct DeviceTrainSettings;
class Optimizer;
struct AdamWParams;

constexpr int kCudaPluginAbi = 2;  // 2: DeviceTrainSettings holds enums (was strings)

struct CudaPluginApi {
    int abi = 0;
    bool (*available)(std::string* why) = nullptr;      // never throws
    std::string (*device_name)() = nullptr;             // "NVIDIA H200 (sm_90, 139.8 GiB)"
    size_t (*free_bytes)() = nullptr;                   // device memory free now
    // LoftQ (cuda/decompose_cuda.h)
    WeightDecomposer* (*new_decomposer)() = nullptr;
    size_t (*decompose_estimate)(int64_t m, int64_t n, const WeightSettings& s, int oversample) = nullptr;
    // Fine-tuning (cuda/train): uploads `cpu` (which may be dropped afterwards); the optimizer
    // works on that model's device LoRA block and must not outlive it.
    DeviceLlama* (*new_llama)(LlamaCpu& cpu, const DeviceTrainSettings& s) = nullptr;
    Optimizer* (*new_optimizer)(DeviceLlama& model, const AdamWParams& p, bool accumulate) = nullptr;
};

// The loaded module's table, or nullptr with *why set (no driver, module not found or stale,
// ...). Loaded once per process; thread-safe.
const CudaPluginApi* cuda_plugin(std::string* why = nullptr);

}  // namespace loftq

// The module's one exported symbol.
extern "C" const loftq::CudaPluginApi* loftq_cuda_plugin_api();
