// matrix.h: plain row-major fp32 matrices. A MatView never owns; a Matrix owns its storage.
// Weights are (rows = out_features) x (cols = in_features), row-major, as in PyTorch/safetensors.
// Storage is a BigVector (core/big_alloc.h): Matrix(r, c) is zero-filled, Matrix::uninit(r, c) and
// reshape_uninit are not (for buffers written in full before they are read).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/big_alloc.h"

namespace loftq {

struct MatView {
    float* data = nullptr;
    int64_t rows = 0, cols = 0;  // row-major, leading dimension == cols
    size_t size() const { return size_t(rows) * size_t(cols); }
    float& at(int64_t r, int64_t c) const { return data[size_t(r) * size_t(cols) + size_t(c)]; }
};

struct Matrix {
    BigVector<float> buf;
    int64_t rows = 0, cols = 0;
    Matrix() = default;
    Matrix(int64_t r, int64_t c, float fill = 0.f) : buf(size_t(r) * size_t(c), fill), rows(r), cols(c) {}
    static Matrix uninit(int64_t r, int64_t c) {
        Matrix m;
        m.reshape_uninit(r, c);
        return m;
    }
    // r x c with the storage kept (grown when needed); element values unspecified.
    void reshape_uninit(int64_t r, int64_t c) {
        buf.resize(size_t(r) * size_t(c));
        rows = r;
        cols = c;
    }
    size_t size() const { return buf.size(); }
    float* data() { return buf.data(); }
    const float* data() const { return buf.data(); }
    MatView view() { return {buf.data(), rows, cols}; }
    float& at(int64_t r, int64_t c) { return buf[size_t(r) * size_t(cols) + size_t(c)]; }
    float at(int64_t r, int64_t c) const { return buf[size_t(r) * size_t(cols) + size_t(c)]; }
};

}  // namespace loftq
