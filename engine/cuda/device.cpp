// device.cpp: CUDA device discovery (see device.h).
#include "cuda/device.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <exception>

#include "cuda/cuda_check.h"

namespace loftq {

bool cuda_available(std::string* why) {
    auto fail = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return false;
    };
    try {
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();  // clear it, so that it does not surface in a later check
            std::string what = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
            // Without any NVIDIA driver the runtime reports an "insufficient" driver: say what that means.
            if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice)
                what = "no usable NVIDIA GPU or driver found (" + what + ")";
            return fail(what);
        }
        if (count <= 0) return fail("no CUDA device");
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
            const cudaError_t e2 = cudaGetLastError();
            return fail(std::string("querying the CUDA device: ") + cudaGetErrorString(e2));
        }
        if (major < 8)
            return fail("CUDA device " + std::to_string(dev) + " is sm_" + std::to_string(major) +
                        std::to_string(minor) + "; this build has kernels for sm_80 and newer");
        if (why) why->clear();
        return true;
    } catch (const std::exception& ex) {  // std::bad_alloc from the strings, at worst
        return fail(ex.what());
    } catch (...) {
        return fail("unknown error while querying CUDA");
    }
}

std::string cuda_device_name() {
    int dev = 0;
    LOFTQ_CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp p{};
    LOFTQ_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
    char buf[64];
    std::snprintf(buf, sizeof buf, " (sm_%d%d, %.1f GB)", p.major, p.minor, double(p.totalGlobalMem) / 1e9);   // decimal, as everywhere
    return std::string(p.name) + buf;
}

}  // namespace loftq
