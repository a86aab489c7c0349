// gpu_skip.h: GPU_OR_SKIP(have, why) for the GPU tests: without a usable CUDA device the test
// skips with the reason, unless LOFTQ_REQUIRE_CUDA=1 (set on a machine that has a GPU, e.g. the
// device kit's run), where it fails: GPU checks then cannot pass by skipping.
#pragma once
#include <QtTest>

#include <cstdlib>
#include <string>

namespace loftq::test {
inline bool cuda_required() {
    const char* e = std::getenv("LOFTQ_REQUIRE_CUDA");
    return e && std::string(e) == "1";
}
}  // namespace loftq::test

#define GPU_OR_SKIP(have, why)                                                                         \
    do {                                                                                               \
        if (!(have)) {                                                                                 \
            const std::string msg_ = "no usable CUDA device: " + std::string(why);                     \
            if (loftq::test::cuda_required()) QFAIL(("LOFTQ_REQUIRE_CUDA=1 but " + msg_).c_str());     \
            QSKIP(msg_.c_str());                                                                       \
        }                                                                                              \
    } while (0)
