// train_device.h: where a training or evaluation run goes, shared by run_finetune, run_eval and
// run_train_bench: the device resolved from the options (with its line for the log), and the
// model loaded and, for CUDA, uploaded to the device with its optimizer beside it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/compute_device.h"
#include "model/device_llama.h"
#include "model/llama.h"
#include "train/adamw.h"
#include "train/optimizer.h"

namespace loftq {

int resolve_threads(int n);   // n > 0 as is, else all hardware threads

// Where a run goes: the device resolved (throws kCudaNotUsable + why when CUDA is asked for and
// unusable; GemmMode::Bf16 with the CPU asked for explicitly is refused) and resolve_device's
// line for the log.
struct DeviceChoice {
    ComputeDevice device = ComputeDevice::Cpu;
    std::string note;
};
DeviceChoice choose_device(ComputeDevice device, GemmMode gemm);

// The model on its device. CUDA: the quantized base is kept packed (LoadOptions::keep_packed),
// `prepare` runs on the host model (e.g. to apply an adapter), then the model is uploaded and the
// host copy dropped. B, T, accum: the shape the run uses (for RecomputeMode::Auto). `say` gets
// progress lines (may be empty).
struct DeviceModel {
    std::unique_ptr<LlamaModel> model;
    std::string where = "cpu";    // "cpu" or "cuda, <GPU name>"
    DeviceLlama* cuda = nullptr;  // the model when it is on the CUDA device
    uint64_t device_peak() const { return cuda ? cuda->device_peak_used() : 0; }
};
DeviceModel load_on_device(LoadOptions lo, ComputeDevice dev, GemmMode gemm, RecomputeMode recompute, int B, int T,
                           int accum, const std::function<void(LlamaModel&)>& prepare,
                           const std::function<void(const std::string&)>& say);

// AdamW where the model is: CudaAdamW through the plugin for a device model, else on the host.
std::unique_ptr<Optimizer> make_optimizer(DeviceModel& dm, const std::vector<TrainableTensor>& params,
                                          const AdamWParams& ap, bool accumulate);

}  // namespace loftq
