// big_alloc.h: the allocator of large numeric buffers (Matrix, a decomposition's codes).
//  - No value-initialization: resize() and BigVector<T>(n) leave new elements unset, because the
//    buffers it serves are written in full before they are read (a zero fill of a 64 MB weight
//    costs as much as a quantizer pass). Constructors with a value (BigVector<T>(n, x)) still fill.
//  - Blocks of kHugeBytes or more are 2 MiB-aligned and advised for transparent huge pages
//    (Linux, THP in "madvise" mode as on Debian): first touch then faults 2 MiB pages instead of
//    4 KiB ones, ~500x fewer faults; on a VM each fault costs microseconds (docs/PERFORMANCE.md).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace loftq {

template <class T>
struct BigAlloc {
    using value_type = T;
    static constexpr size_t kHugeBytes = size_t(4) << 20;
    static constexpr size_t kHugePage = size_t(2) << 20;

    BigAlloc() = default;
    template <class U>
    BigAlloc(const BigAlloc<U>&) noexcept {}

    T* allocate(size_t n) {
        if (n > (size_t(1) << 62) / sizeof(T)) throw std::bad_array_new_length();
        const size_t bytes = n * sizeof(T);
        if (bytes < kHugeBytes) return std::allocator<T>().allocate(n);
        const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
        void* p = std::aligned_alloc(kHugePage, rounded);
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
#endif
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t n) noexcept {
        if (n * sizeof(T) < kHugeBytes) std::allocator<T>().deallocate(p, n);
        else std::free(p);
    }
    // Default-initialization for value-less construction (no zero fill for arithmetic types).
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... A>
    void construct(U* p, A&&... a) {
        ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
    template <class U>
    bool operator==(const BigAlloc<U>&) const noexcept { return true; }
};

template <class T>
using BigVector = std::vector<T, BigAlloc<T>>;

}  // namespace loftq
