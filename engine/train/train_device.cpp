// train_device.cpp: see train_device.h.
#include "train/train_device.h"

#include "core/error.h"
#include "core/parallel.h"
#include "device/cuda_plugin.h"
#include "model/llama_cpu.h"
#include "quant/quantizer.h"

namespace loftq {

int resolve_threads(int n) { return n > 0 ? n : hardware_threads(); }

DeviceChoice choose_device(ComputeDevice device, GemmMode gemm) {
    // bf16 changes the numerics (bf16 base weights and GEMM inputs), which only the CUDA path has:
    // asked together with an explicit CPU device, say so instead of silently computing in fp32
    // (tf32 / fp32 are speed settings that the CPU, always exact fp32, may ignore; auto resolving
    // to the CPU ignores bf16 too, with the device note saying where the run goes).
    if (gemm == GemmMode::Bf16 && device == ComputeDevice::Cpu)
        throw Error("GEMM mode bf16 exists on the CUDA device only (the CPU computes in fp32): choose the CUDA device "
                    "or auto, or GEMM mode tf32");
    DeviceChoice c;
    c.device = resolve_device(device, &c.note);
    return c;
}

DeviceModel load_on_device(LoadOptions lo, ComputeDevice dev, GemmMode gemm, RecomputeMode recompute, int B, int T,
                           int accum, const std::function<void(LlamaModel&)>& prepare,
                           const std::function<void(const std::string&)>& say) {
    DeviceModel r;
    auto note = [&](const std::string& text) {
        if (say) say(text);
    };
    if (dev == ComputeDevice::Cuda) lo.keep_packed = true;
    std::unique_ptr<LlamaModel> m = load_llama(lo);
    if (prepare) prepare(*m);
    if (dev == ComputeDevice::Cuda) {
        auto* cpu = dynamic_cast<LlamaCpu*>(m.get());
        if (!cpu) throw Error("fine-tune: the loader returned no CPU model to upload");
        std::string why;
        const CudaPluginApi* api = cuda_plugin(&why);
        if (!api) throw Error(kCudaNotUsable + why);
        if (lo.init != InitKind::Lora16 && !cpu->packed_sites())
            note("the base goes to the device as fp32 (32 bits per weight): the stored weights are not on their "
                "quantizer's grid (a bf16/fp16 export or a 16-bit checkpoint); a packed export or a LoftQ/QLoRA start "
                "keeps k bits per weight");
        DeviceTrainSettings ds;
        ds.gemm = gemm;
        ds.recompute = recompute;
        ds.plan_batch = B;
        ds.plan_seq = T;
        ds.accum = accum;
        std::string base = "fp32";
        if (cpu->packed_sites()) {
            const PackedSite& p = cpu->packed_site(0, LoraSite::Q);
            base = std::string(quant_format(p.kind).name) + " packed (block " + std::to_string(p.block) + ")";
        }
        std::unique_ptr<DeviceLlama> dm(api->new_llama(*cpu, ds));
        m.reset();  // the host copy of the base is no longer needed
        note("on the device: " + base + " base, " + kGemmModeNames.name(gemm) + " GEMMs, recompute " +
             (dm->recompute() ? "on" : "off") + "; device memory held: " + dm->memory_summary());
        r.where = "cuda, " + cuda_status().device;
        r.cuda = dm.get();
        r.model = std::move(dm);
        return r;
    }
    r.model = std::move(m);
    return r;
}

std::unique_ptr<Optimizer> make_optimizer(DeviceModel& dm, const std::vector<TrainableTensor>& params,
                                          const AdamWParams& ap, bool accumulate) {
    if (dm.cuda) {
        const CudaPluginApi* api = cuda_plugin();  // loaded: it made the model
        return std::unique_ptr<Optimizer>(api->new_optimizer(*dm.cuda, ap, accumulate));
    }
    return make_cpu_optimizer(params, ap, accumulate);
}

}  // namespace loftq
