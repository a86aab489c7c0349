// compute_device.cpp: see device/compute_device.h. The CUDA backend is a plugin (device/cuda_plugin.h); this
// file asks it once and everything else asks cuda_status().
#include "device/compute_device.h"

#include <mutex>

#include "core/error.h"
#include "device/cuda_plugin.h"

namespace loftq {

const CudaStatus& cuda_status() {
    static CudaStatus st;
    static std::once_flag once;
    std::call_once(once, [] {
        const CudaPluginApi* api = cuda_plugin(&st.why_not);
        if (!api) return;
        st.built = true;
        st.available = api->available(&st.why_not);
        if (st.available) {
            try {
                st.device = api->device_name();
            } catch (const std::exception& e) {
                st.available = false;
                st.why_not = e.what();
            }
        }
    });
    return st;
}

ComputeDevice resolve_device(ComputeDevice requested, std::string* note) {
    const CudaStatus& st = cuda_status();
    ComputeDevice d = requested;
    if (requested == ComputeDevice::Auto) d = st.available ? ComputeDevice::Cuda : ComputeDevice::Cpu;
    if (d == ComputeDevice::Cuda && !st.available) throw Error(std::string(kCudaNotUsable) + st.why_not);
    if (note) {
        if (d == ComputeDevice::Cuda) *note = "device: cuda, " + st.device;
        else if (requested == ComputeDevice::Auto) *note = "device: cpu (CUDA: " + st.why_not + ")";
        else *note = "device: cpu";
    }
    return d;
}

}  // namespace loftq
