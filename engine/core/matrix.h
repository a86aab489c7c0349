// matrix.h: plain row-major fp32 matrices. A MatView never owns; a Matrix owns its storage.
// Weights are (rows = out_features) x (cols = in_features), row-major, as in PyTorch/safetensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loftq {

struct MatView {
    float* data = nullptr;
    int64_t rows = 0, cols = 0;  // row-major, leading dimension == cols
    size_t size() const { return size_t(rows) * size_t(cols); }
    float& at(int64_t r, int64_t c) const { return data[size_t(r) * size_t(cols) + size_t(c)]; }
};

struct Matrix {
    std::vector<float> buf;
    int64_t rows = 0, cols = 0;
    Matrix() = default;
    Matrix(int64_t r, int64_t c, float fill = 0.f) : buf(size_t(r) * size_t(c), fill), rows(r), cols(c) {}
    size_t size() const { return buf.size(); }
    float* data() { return buf.data(); }
    const float* data() const { return buf.data(); }
    MatView view() { return {buf.data(), rows, cols}; }
    float& at(int64_t r, int64_t c) { return buf[size_t(r) * size_t(cols) + size_t(c)]; }
    float at(int64_t r, int64_t c) const { return buf[size_t(r) * size_t(cols) + size_t(c)]; }
};

}  // namespace loftq
