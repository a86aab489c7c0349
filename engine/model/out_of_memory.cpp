// out_of_memory.cpp: see out_of_memory.h.
#include "model/out_of_memory.h"

#include <new>

#include "core/error.h"
#include "core/units.h"

namespace loftq {

std::string fp32_size_text(const std::vector<int64_t>& shape) {
    double n = 1;
    std::string dims;
    for (int64_t d : shape) {
        n *= double(d);
        dims += (dims.empty() ? "" : " x ") + std::to_string(d);
    }
    return human_bytes(4.0 * n) + " (fp32, " + (dims.empty() ? std::string("scalar") : dims) + ")";
}

std::string out_of_memory_text(const std::string& what) { return "out of memory allocating " + what; }

void rethrow_naming_size(const std::string& file, const std::string& tensor, const std::vector<int64_t>& shape) {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        throw Error(file, tensor, out_of_memory_text(fp32_size_text(shape)));
    } catch (...) {
        rethrow_naming(file, tensor);
    }
}

}  // namespace loftq
