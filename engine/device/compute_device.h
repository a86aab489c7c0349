// compute_device.h: where a job runs — the CPU or the CUDA device — chosen per run by the CLI's
// `--device auto|cpu|cuda` and the GUI's device chooser, in any build: without the CUDA backend
// (no nvcc at build time) or without a usable GPU at run time, `auto` falls back to the CPU and
// says why, and `cuda` is refused with that reason.
#pragma once
#include <cstdint>
#include <string>

#include "core/name_table.h"

namespace loftq {

enum class ComputeDevice : uint8_t { Auto, Cpu, Cuda };
inline constexpr auto kComputeDeviceNames = name_table<ComputeDevice>(
    "device", {{ComputeDevice::Auto, "auto"}, {ComputeDevice::Cpu, "cpu"}, {ComputeDevice::Cuda, "cuda"}});

struct CudaStatus {
    bool built = false;      // the CUDA backend plugin was found and loaded (device/cuda_plugin.h)
    bool available = false;  // ... and a usable device is present now
    std::string device;      // "NVIDIA H200 (sm_90, 139.8 GiB)" when available
    std::string why_not;     // the reason when !available ("built without CUDA (no nvcc)", the driver's error, ...)
};
// Queried once per process and cached (device discovery costs ~100 ms with a driver present).
const CudaStatus& cuda_status();

// Auto -> Cuda when cuda_status().available, else Cpu; Cpu -> Cpu; Cuda -> Cuda when available,
// else throws loftq::Error(kCudaNotUsable + why_not). *note (when given) gets one line for the
// log: "device: cuda, NVIDIA H200 (...)" or "device: cpu (CUDA: <why>)".
constexpr const char* kCudaNotUsable = "the CUDA device is not usable: ";
ComputeDevice resolve_device(ComputeDevice requested, std::string* note = nullptr);

}  // namespace loftq
