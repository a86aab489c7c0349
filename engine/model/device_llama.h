// device_llama.h: what the trainer needs of a LlamaModel that lives on an accelerator (the CUDA
// backend's LlamaCuda, engine/cuda/train/llama_cuda.h), beyond LlamaModel: the LoRA host mirrors'
// sync points, a stream barrier for timing, and its memory report. An interface here (and not the
// class itself) because the CUDA backend is a plugin loaded at run time (device/cuda_plugin.h):
// the trainer reaches it only through virtual calls.
#pragma once
#include <cstdint>
#include <string>

#include "core/name_table.h"
#include "model/llama.h"

namespace loftq {

// The frozen base's GEMMs on the device: TF32 tensor cores (fp32 accumulation), exact fp32, or
// bf16 inputs (bf16 base weights) with fp32 accumulation, as PyTorch's bf16 autocast. The CPU
// always computes in fp32.
enum class GemmMode : uint8_t { Tf32, Fp32, Bf16 };
inline constexpr auto kGemmModeNames =
    name_table<GemmMode>("GEMM mode", {{GemmMode::Tf32, "tf32"}, {GemmMode::Fp32, "fp32"}, {GemmMode::Bf16, "bf16"}});

// Per-layer activation recomputation (activation checkpointing) on the device: Auto turns it on
// when the activations at the run's (B, T) would not fit the device memory.
enum class RecomputeMode : uint8_t { Auto, On, Off };
inline constexpr auto kRecomputeModeNames = name_table<RecomputeMode>(
    "recompute mode", {{RecomputeMode::Auto, "auto"}, {RecomputeMode::On, "on"}, {RecomputeMode::Off, "off"}});

// How the device model is built.
struct DeviceTrainSettings {
    GemmMode gemm = GemmMode::Tf32;
    RecomputeMode recompute = RecomputeMode::Auto;
    int plan_batch = 0, plan_seq = 0; // the (B, T) that RecomputeMode::Auto sizes for
    int accum = 1;                    // micro-batches per step
};

class DeviceLlama : public LlamaModel {
public:
    // trainable() returns HOST mirrors: download_lora() before reading them, upload_lora() after
    // writing values.
    virtual void download_lora() = 0;
    virtual void upload_lora() = 0;
    virtual void synchronize() const = 0;      // waits for the device's queued work
    virtual bool packed_base() const = 0;      // the frozen projections are k-bit codes on the device
    virtual bool recompute() const = 0;        // per-layer recomputation is on
    virtual std::string memory_summary() const = 0;   // one line: bytes by category, in GiB
    virtual uint64_t memory_peak() const = 0;         // own accounting: largest total held
    virtual uint64_t device_peak_used() const = 0;    // largest device use sampled (all users)
};

}  // namespace loftq
