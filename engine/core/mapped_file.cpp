// mapped_file.cpp: see mapped_file.h.
#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace loftq {

Mapping map_readonly(const std::string& path, uint64_t min_size, const std::string& what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path, "", std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        throw Error(path, "", std::string("cannot stat: ") + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path, "", "not a regular file");
    }
    const uint64_t size = uint64_t(st.st_size);
    if (size < min_size) {
        ::close(fd);
        throw Error(path, "", "truncated: file is " + std::to_string(size) + " bytes, too small for " + what + " (at least " +
                                  std::to_string(min_size) + " bytes)");
    }
    void* m = ::mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    ::close(fd);  // the mapping keeps the file alive
    if (m == MAP_FAILED) throw Error(path, "", std::string("cannot map: ") + std::strerror(map_errno));
    return {m, size};
}

void unmap(Mapping& m) {
    if (m.data) ::munmap(m.data, size_t(m.size));
    m = {};
}

void release_pages(const void* p, uint64_t n) {
    if (!p || n == 0) return;
    static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t b = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
    const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
    ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace loftq
