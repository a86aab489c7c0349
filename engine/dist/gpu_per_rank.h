// gpu_per_rank.h: which GPU each rank of a run on one machine uses. Several ranks on a machine
// with as many GPUs or more each take their own (local rank L gets GPU L mod count), through
// CUDA_VISIBLE_DEVICES set before CUDA starts; with fewer GPUs than local ranks they share the
// first one (nothing set). A CUDA_VISIBLE_DEVICES the user set is always kept.
#pragma once
#include <string>

namespace loftq {

// The CUDA_VISIBLE_DEVICES value for local rank `local_rank` of `local_size` on a machine with
// `gpus` NVIDIA devices, "" to leave it as it is.
std::string gpu_for_local_rank(int local_rank, int local_size, int gpus);
// NVIDIA devices on this machine, counted from the device files (/dev/nvidia0, /dev/nvidia1, ...)
// without starting CUDA; 0 when none.
int count_nvidia_devices(const std::string& dev_dir = "/dev");

}  // namespace loftq
