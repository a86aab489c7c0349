// fsutil.h: file-system helpers for atomic outputs and input checksums.
//
// StagedOutput collects every file of one export under temporary names (`<final>.partial`) and
// renames them all into place in commit(), in the order they were staged (so the file that marks
// an export as finished — the metrics — is staged last). If commit() is never reached (error,
// cancel, crash), the destructor removes the partial files: no file that looks finished is left.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

class StagedOutput {
public:
    // Abandoned (destroyed without commit: a failure, a cancel), the partial files are removed and,
    // as asked, the empty folders under `dir` (e.g. an adapter subfolder the writers made) and
    // `dir` itself when the caller created it for this output: never a file, so that a failed run
    // leaves no empty folder behind (which the next run would refuse without --force).
    enum class EmptyFolders { Keep, RemoveUnder, RemoveUnderAndDir };
    explicit StagedOutput(std::string dir, EmptyFolders abandoned = EmptyFolders::Keep)
        : dir_(std::move(dir)), empty_folders_(abandoned) {}
    // RemoveUnderAndDir when the folder was created for this output, else RemoveUnder.
    static EmptyFolders output_folder(bool created) { return created ? EmptyFolders::RemoveUnderAndDir : EmptyFolders::RemoveUnder; }
    ~StagedOutput();
    StagedOutput(const StagedOutput&) = delete;
    StagedOutput& operator=(const StagedOutput&) = delete;

    const std::string& dir() const { return dir_; }
    // Path of `<dir>/<rel>` (parents created) and its partial name; the caller writes the partial.
    std::string final_path(const std::string& rel) const;
    // Registers rel for commit and returns the partial path to write to.
    std::string stage(const std::string& rel);
    // Writes `bytes` to the partial of `rel` (and fsyncs it). Throws loftq::Error on failure.
    void write(const std::string& rel, const std::string& bytes);
    // Copies an existing file to the partial of `rel`. Throws loftq::Error naming both files.
    void copy_from(const std::string& rel, const std::string& source);
    // Registers a file written elsewhere (e.g. a SafetensorsWriter's own partial) for ordering
    // only: `rename_from` is renamed to `<dir>/<rel>` at commit.
    void adopt(const std::string& rel, const std::string& rename_from);
    // Renames every staged file into place, in staging order; fsyncs the folder(s).
    void commit();
    const std::vector<std::string>& committed_files() const { return committed_; }

private:
    std::string dir_;
    struct Entry { std::string partial, final; bool owned; };
    std::vector<Entry> entries_;
    std::vector<std::string> committed_;
    bool done_ = false;
    EmptyFolders empty_folders_ = EmptyFolders::Keep;
};

// Writes a whole file atomically (partial + fsync + rename). Throws loftq::Error naming it.
void write_file_atomic(const std::string& path, const std::string& bytes);
std::string read_text_file(const std::string& path);  // throws loftq::Error naming the file
void fsync_dir(const std::string& dir);

// Same file or folder (by device and inode), false when either does not exist.
bool same_file(const std::string& a, const std::string& b);
// Whether `inner` is `outer` or lies inside it (both made absolute and normalized).
bool path_within(const std::string& inner, const std::string& outer);

// XXH3-64 of a whole file, streamed in 4 MiB chunks (about 10 GB/s), as 16 hex digits.
std::string file_checksum(const std::string& path);
// Now as an ISO-8601 UTC timestamp ("2026-11-23T10:00:00Z").
std::string utc_timestamp();

// Paths go into the JSON an output records (manifests, metrics, adapter configs), and JSON text is
// UTF-8; Linux allows any bytes in a name. Throws loftq::Error naming `what` and the path when it
// is not valid UTF-8, so that a run refuses at its start rather than failing as it writes.
void require_utf8_path(const std::string& path, const std::string& what);

}  // namespace loftq
