// compute_device.cpp: see device/compute_device.h. The CUDA backend is a plugin (device/cuda_plugin.h); this
// file asks it once and everything else asks cuda_status().
#include "device/compute_device.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "core/error.h"
#include "device/cuda_plugin.h"

namespace loftq {

const char* device_name(ComputeDevice d) {
    switch (d) {
    case ComputeDevice::Auto: return "auto";
    case ComputeDevice::Cpu: return "cpu";
    case ComputeDevice::Cuda: return "cuda";
    }
    return "?";
}

std::optional<ComputeDevice> device_from_name(std::string_view name) {
    std::string s(name);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (auto d : {ComputeDevice::Auto, ComputeDevice::Cpu, ComputeDevice::Cuda})
        if (s == device_name(d)) return d;
    return std::nullopt;
}

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
    if (d == ComputeDevice::Cuda && !st.available) throw Error("--device cuda: " + st.why_not);
    if (note) {
        if (d == ComputeDevice::Cuda) *note = "device: cuda, " + st.device;
        else if (requested == ComputeDevice::Auto) *note = "device: cpu (CUDA: " + st.why_not + ")";
        else *note = "device: cpu";
    }
    return d;
}

}  // namespace loftq
