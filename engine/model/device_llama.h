// device_llama.h: what the trainer needs of a LlamaModel that lives on an accelerator (the CUDA
// backend's LlamaCuda, engine/cuda/train/llama_cuda.h), beyond LlamaModel: the LoRA host mirrors'
// sync points, a stream barrier for timing, and its memory report. An interface here (and not the
// class itself) because the CUDA backend is a plugin loaded at run time (device/cuda_plugin.h):
// the trainer reaches it only through virtual calls.
#pragma once
#include <cstdint>
#include <string>

#include "model/llama.h"

namespace loftq {

// How the device model is built (names as the CLI takes them; the plugin checks them).
struct DeviceTrainSettings {
    std::string gemm = "tf32";        // "tf32" or "fp32"
    std::string recompute = "auto";   // "auto", "on" or "off": per-layer activation recomputation
    int plan_batch = 0, plan_seq = 0; // the (B, T) that `auto` sizes for
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
