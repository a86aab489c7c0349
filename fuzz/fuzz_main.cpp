// fuzz_main.cpp: libFuzzer's entry point for one target, chosen at compile time
// (LOFTQ_FUZZ_TARGET=<function in targets.h>; fuzz/CMakeLists.txt builds one executable each).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return loftq::fuzz::LOFTQ_FUZZ_TARGET(data, size);
}
