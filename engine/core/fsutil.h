// fsutil.h: file-system helpers for atomic outputs and input checksums.
//
// StagedOutput collects every file of one output under temporary names (`<final>.partial`) and
// renames them all into place in commit(), in the order they were staged (so the file that marks
// an export as finished — the metrics — is staged last). If commit() is never reached (error,
// cancel, crash), the destructor removes the partial files: no file that looks finished is left.
//
// Two modes. Per file (fine-tune adapters and checkpoints, small outputs): the partials live in
// the output folder and commit() renames them one by one. Whole folder (exports, FolderSwap):
// everything is written into a fresh hidden sibling `<parent>/.<name>.loftq-staging-<pid>-<n>`
// (same parent, so the same file system), and commit() swaps that folder in with one rename(2)
// (the output did not exist) or one renameat2(RENAME_EXCHANGE) (it did: --force), then removes
// the old tree, now under the staging name. A crash at any instant leaves the output folder
// either wholly old or wholly new; the next whole-folder output beside it removes the staging
// folders of processes that no longer run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
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
        : dir_(std::move(dir)), out_(dir_), empty_folders_(abandoned) {}
    // RemoveUnderAndDir when the folder was created for this output, else RemoveUnder.
    static EmptyFolders output_folder(bool created) { return created ? EmptyFolders::RemoveUnderAndDir : EmptyFolders::RemoveUnder; }

    // Whole-folder mode. `out_dir` is the absolute output folder; it may exist (it is then replaced
    // at commit) or not (its parent must exist). A symbolic link as `out_dir` is followed: the
    // folder it names is the one replaced, beside which the staging folder is made, and the link
    // stays. Files of the replaced folder that the new output does not write are carried over
    // (hard links; copies where a link fails; sub-folders recursively; symbolic links as links),
    // except those `drop_old` names (relative paths with '/', e.g. stale weight shards). Abandoned,
    // the staging folder is removed whole and `out_dir` is untouched (or still absent).
    struct FolderSwap {
        std::function<bool(const std::string& rel)> drop_old;
    };
    StagedOutput(const std::string& out_dir, FolderSwap swap);

    ~StagedOutput();
    StagedOutput(const StagedOutput&) = delete;
    StagedOutput& operator=(const StagedOutput&) = delete;

    // Where files are written: the output folder, or in whole-folder mode the staging folder.
    const std::string& dir() const { return dir_; }
    // Where they are after commit().
    const std::string& output_dir() const { return out_; }
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
    // Every file staged so far: (rel, where its bytes are now: the partial). For checksums of
    // the finished files before the file that lists them is staged.
    std::vector<std::pair<std::string, std::string>> staged_files() const;
    // Renames every staged file into place, in staging order; fsyncs the folder(s). Whole-folder
    // mode then carries the old folder's other files over and swaps the staging folder in.
    void commit();
    // The files' paths under output_dir(), in staging order.
    const std::vector<std::string>& committed_files() const { return committed_; }

private:
    void swap_in();
    std::string dir_, out_;
    std::string target_;    // whole-folder mode: out_ with a final symbolic link resolved; "" otherwise
    std::string leftover_;  // whole-folder mode, after the swap: the old tree until it is removed
    FolderSwap swap_;
    struct Entry { std::string rel, partial, final; bool owned; };
    std::vector<Entry> entries_;
    std::vector<std::string> committed_;
    bool done_ = false;
    EmptyFolders empty_folders_ = EmptyFolders::Keep;
};

// Whole-folder commits call this hook at their named steps, in order: "staged" (every file in
// the staging folder, the output untouched), "carried" (the old folder's other files linked in,
// just before the swap), "swapped" (the new folder in place, the old tree not yet removed). For
// tests: a hook that throws is a failure at that step. The environment variable
// LOFTQ_TEST_CRASH_AT=<step> ends the process there with _exit(86) (a crash, for tests that run
// the CLI). An empty hook clears it.
void set_folder_commit_hook(std::function<void(const char* step)> hook);

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
