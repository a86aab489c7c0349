// cuda_plugin.cpp: finding and opening libloftq_cuda.so (see device/cuda_plugin.h).
#include "device/cuda_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

namespace fs = std::filesystem;

namespace loftq {

namespace {
struct Loaded {
    const CudaPluginApi* api = nullptr;
    std::string why;
};

#ifdef LOFTQ_CUDA_BUILT
std::string dl_error() {
    const char* e = dlerror();
    return e ? e : "unknown dlopen error";
}

std::vector<std::string> candidates() {
    std::vector<std::string> v;
    if (const char* env = std::getenv("LOFTQ_CUDA_PLUGIN"); env && *env) v.push_back(env);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path dir = exe.parent_path();
        v.push_back((dir / ".." / "lib" / "libloftq_cuda.so").lexically_normal().string());
        v.push_back((dir / ".." / "lib" / "loftq" / "libloftq_cuda.so").lexically_normal().string());
        v.push_back((dir / "libloftq_cuda.so").string());
    }
    return v;
}
#endif

Loaded load() {
    Loaded r;
#ifndef LOFTQ_CUDA_BUILT
    r.why = "this build has no CUDA backend (nvcc was not found when it was configured)";
    return r;
#else
    // The driver first: without it the module would load ~180 MB of CUDA libraries for nothing.
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver) {
        r.why = "no NVIDIA driver found (" + dl_error() + ")";
        return r;
    }
    // Kept open: the module's CUDA runtime uses it.
    std::string tried;
    for (const std::string& path : candidates()) {
        std::error_code ec;
        if (!fs::exists(path, ec)) {
            tried += (tried.empty() ? "" : ", ") + path;
            continue;
        }
        void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            r.why = "cannot open the CUDA backend " + path + ": " + dl_error();
            return r;
        }
        using Entry = const CudaPluginApi* (*)();
        auto entry = reinterpret_cast<Entry>(dlsym(h, "loftq_cuda_plugin_api"));
        const CudaPluginApi* api = entry ? entry() : nullptr;
        if (!api || api->abi != kCudaPluginAbi) {
            r.why = "the CUDA backend " + path + " does not match this program (rebuild it)";
            return r;  // left open: unloading a half-initialized CUDA module is not worth the risk
        }
        r.api = api;
        return r;
    }
    r.why = "the CUDA backend libloftq_cuda.so was not found (looked at " + tried + "; set LOFTQ_CUDA_PLUGIN)";
    return r;
#endif
}
}  // namespace

const CudaPluginApi* cuda_plugin(std::string* why) {
    static Loaded loaded;
    static std::once_flag once;
    std::call_once(once, [] { loaded = load(); });
    if (!loaded.api && why) *why = loaded.why;
    return loaded.api;
}

}  // namespace loftq
