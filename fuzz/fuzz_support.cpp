// fuzz_support.cpp: see fuzz_support.h.
#include "fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace fs = std::filesystem;

namespace loftq::fuzz {

const std::string& scratch_dir() {
    // Never destroyed: the exit handler that removes the folder runs after static destructors.
    static const std::string* dir = [] {
        fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("loftq-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(scratch_dir(), ec);
        });
        return new std::string(d.string());
    }();
    return *dir;
}

std::string write_scratch(const std::string& rel, const uint8_t* data, size_t size) {
    fs::path p = fs::path(scratch_dir()) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
    if (!out) fail("cannot write scratch file " + p.string());
    return p.string();
}

std::string write_scratch(const std::string& rel, const std::string& bytes) {
    return write_scratch(rel, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot read " + path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string source_dir() { return LOFTQ_SOURCE_DIR; }

void fail(const std::string& what) {
    std::fprintf(stderr, "\nloftq fuzz: FINDING: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

bool expect_clean(const std::string& file, const std::function<void()>& parse) {
    try {
        parse();
        return true;
    } catch (const Error& e) {
        const std::string msg = e.what();
        static const bool verbose = std::getenv("LOFTQ_FUZZ_VERBOSE") != nullptr;  // to see what a seed hits
        if (verbose) std::fprintf(stderr, "refused: %s\n", msg.c_str());
        const std::string name = fs::path(file).filename().string();
        // The file itself, or a file of the same input (a shard beside an index, a folder).
        if (msg.find(name) == std::string::npos && msg.find(scratch_dir()) == std::string::npos)
            fail("error does not name the file " + file + ": " + msg);
        return false;
    } catch (const std::exception& e) {
        fail(std::string("not a loftq::Error (") + typeid(e).name() + "): " + e.what());
    } catch (...) {
        fail("unknown exception");
    }
}

}  // namespace loftq::fuzz
