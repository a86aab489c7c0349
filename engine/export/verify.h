// verify.h: an export checked against the sizes and checksums its manifest recorded.
// Every export (hf, packed, bnb-nf4, unpack) lists in loftq_metrics.json, written last, each
// other file it wrote: "outputs": {"<path relative to the folder, '/'>": {"bytes": N,
// "xxh3_64": "<16 hex digits>"}} (XXH3-64 as core/fsutil.h file_checksum). verify_export reads
// that list back: `loftq verify`, and `loftq unpack` before it reads a packed export.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fsutil.h"

namespace loftq {

struct VerifyReport {
    // Ok: every listed file is there with its size and checksum. Failed: problems (below).
    // NoManifest: no loftq_metrics.json (not an export, or an unfinished one). NoChecksums: a
    // manifest without "outputs" (written before exports recorded checksums).
    enum class Status { Ok, Failed, NoManifest, NoChecksums };
    Status status = Status::Ok;
    std::string dir;       // the export folder, as given
    std::string manifest;  // <dir>/loftq_metrics.json
    struct Problem {
        std::string file;  // relative to dir ("loftq_metrics.json" for a damaged manifest)
        std::string what;  // "missing", "size 10 bytes, the manifest says 12", "changed (...)", ...
    };
    std::vector<Problem> problems;
    std::vector<std::string> unlisted;  // files present that the manifest does not list: a note, not a failure
    size_t files_checked = 0;           // listed files read and matched
    uint64_t bytes_checked = 0;
    bool ok() const { return status == Status::Ok; }
    // One line: why it could not be verified (NoManifest, NoChecksums), else "".
    std::string cannot_verify_reason() const;
};

// Reads every listed file once (about 10 GB/s from the page cache). Throws loftq::Error naming
// `dir` when it is not a folder; anything wrong inside it is reported, not thrown.
VerifyReport verify_export(const std::string& dir);

// Throws loftq::Error naming the first problem's file ("<dir>/<file>: <what>; ...") when the
// report failed; returns for Ok and for exports that cannot be verified.
void require_verified(const VerifyReport& r);

// The "outputs" object for every file staged so far (sizes and checksums of their partials), in
// staging order. Called just before the manifest itself is staged.
nlohmann::ordered_json outputs_manifest(const StagedOutput& staged);

}  // namespace loftq
