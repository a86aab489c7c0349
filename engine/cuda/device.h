// device.h: is a usable CUDA device present, and what is it. Without a driver (or with a
// driver but no GPU) the CUDA runtime fails cudaGetDeviceCount; callers ask cuda_available()
// first and fall back to the CPU paths.
#pragma once
#include <string>

namespace loftq {

// True when device 0 exists and can run this build's kernels (compute capability >= 8.0, the
// oldest of CUDA_ARCHITECTURES 80;90). Never throws: on false, *why (when given) gets the
// reason ("cudaGetDeviceCount: CUDA driver version is insufficient ...", "no CUDA device", ...).
bool cuda_available(std::string* why = nullptr);

// "NVIDIA H200 (sm_90, 139.8 GiB)" for the current device; throws loftq::Error without one.
std::string cuda_device_name();

}  // namespace loftq
