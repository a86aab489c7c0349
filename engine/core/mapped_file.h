// mapped_file.h: read-only memory mapping of a whole input file, the one way the readers open
// checkpoints (safetensors, llama2.c): open, check it is a regular file of at least `min_size`
// bytes, mmap PROT_READ/MAP_PRIVATE, close the descriptor (the mapping keeps the file alive).
// Errors are loftq::Error naming the file; `what` names the format in the too-small message.
#pragma once
#include <cstdint>
#include <string>

namespace loftq {

struct Mapping {
    void* data = nullptr;
    uint64_t size = 0;
};

// Throws loftq::Error: cannot open / not a regular file / smaller than min_size / cannot map.
Mapping map_readonly(const std::string& path, uint64_t min_size, const std::string& what);
void unmap(Mapping& m);
// Drops the resident pages of [p, p + n) of a read-only mapping (madvise DONTNEED): they are
// re-read from the file if touched again, so this only trims memory. Readers call it after
// converting a tensor, so that memory stays bounded by the weights in flight.
void release_pages(const void* p, uint64_t n);

}  // namespace loftq
