// test_support.h: small helpers shared by the Qt Test executables: where ../shared is, temporary
// folders, deterministic random data and matrices with controlled spectra.
#pragma once

// LOFTQ_ASAN: defined in an AddressSanitizer build (GCC's macro, or clang's feature test), for the
// tests whose figures ASan changes (peak memory, address-space limits): they skip there.
#if defined(__SANITIZE_ADDRESS__)
#define LOFTQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOFTQ_ASAN 1
#endif
#endif
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/matrix.h"

namespace loftq::test {

// ../shared (from LOFTQ_SHARED_DIR set by CTest), or "" when it is absent.
std::string shared_dir();
// The real pretrained stories260K shipped in the repository (resources/models/stories260K: the
// llama2.c .bin and its tok512.bin), available everywhere, unlike ../shared.
std::string shipped_stories260k();
// The checkout's root (for files the tests read from the tree, e.g. tests/llamacpp/).
std::string source_dir();
// A fresh empty temporary folder, removed at process exit.
std::string make_temp_dir(const std::string& tag);
// A file's bytes ("" when it cannot be read: tests compare, they do not diagnose), and a file
// written with exactly `bytes` (truncated first).
std::string read_file(const std::string& path);
std::vector<uint8_t> file_bytes(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
// XORs `mask` into the byte at `offset` of the file (a negative offset counts from its end), in
// place: a flipped bit that no format check can see (tests of checksums). Fails the test's
// process with a message when the file cannot be opened.
void flip_bits(const std::string& path, int64_t offset, uint8_t mask);

// n i.i.d. N(0, sigma^2) floats from `seed`.
std::vector<float> gaussian(size_t n, uint64_t seed, double sigma = 1.0);
// An m x n matrix with a decaying spectrum plus heavy-ish tails, like a trained weight:
// sum_k s_k u_k v_k^T with s_k = decay^k, plus `noise` * Gaussian, plus a few outliers.
Matrix structured_matrix(int64_t m, int64_t n, uint64_t seed, double decay = 0.9, double noise = 0.02);

// The bit pattern of f (exact comparisons, NaN payloads).
inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// ||A - B||_F / ||A||_F in float64.
double rel_err(const float* a, const float* b, size_t n);
double frob(const float* a, size_t n);

}  // namespace loftq::test
