// fuzz_support.h: what every fuzz target shares. A target gets bytes from libFuzzer (or from a
// corpus file when the test suite replays the corpora), writes them where the parser expects a
// file, calls the parser, and checks the one rule for untrusted input: the call either succeeds or
// throws loftq::Error whose message names the file it was given (or another file of the same
// input: a shard beside an index, the folder). Anything else (another exception
// type, a message without the file, a crash, a sanitizer report, a hang, unbounded memory) is a
// finding: fail() prints it and aborts, so libFuzzer saves the input.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace loftq::fuzz {

// This process's scratch folder (tmpfs when /dev/shm exists), created once, removed at exit.
const std::string& scratch_dir();
// Writes `size` bytes to scratch_dir()/rel (parents created) and returns the path.
std::string write_scratch(const std::string& rel, const uint8_t* data, size_t size);
std::string write_scratch(const std::string& rel, const std::string& bytes);
// A whole file's bytes (fail() when it cannot be read).
std::string read_whole(const std::string& path);
// The repository's folder (for shipped fixtures such as the demo tokenizer).
std::string source_dir();

// Runs `parse`; returns true when it succeeded, false when it threw a loftq::Error that names
// `file` (its path or file name). Any other outcome calls fail(). LOFTQ_FUZZ_VERBOSE=1 in the
// environment prints each refusal (to check that seeds get past the parser).
bool expect_clean(const std::string& file, const std::function<void()>& parse);
[[noreturn]] void fail(const std::string& what);

}  // namespace loftq::fuzz
