// gpu_per_rank.cpp: see gpu_per_rank.h.
#include "dist/gpu_per_rank.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace loftq {

std::string gpu_for_local_rank(int local_rank, int local_size, int gpus) {
    if (local_size <= 1 || gpus < local_size || local_rank < 0) return "";
    return std::to_string(local_rank % gpus);
}

int count_nvidia_devices(const std::string& dev_dir) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dev_dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() > 6 && name.compare(0, 6, "nvidia") == 0 &&
            std::all_of(name.begin() + 6, name.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
            ++n;
    }
    return n;
}

}  // namespace loftq
