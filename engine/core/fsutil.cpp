// fsutil.cpp: see fsutil.h. POSIX calls (open/pwrite/fsync/rename) so errors carry errno text.
#include "core/fsutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const char* p, size_t n, const std::string& path) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw Error(path, "", "write failed: " + errno_text());
        }
        p += w;
        n -= size_t(w);
    }
}
}  // namespace

void fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

static void write_file_raw(const std::string& path, const std::string& bytes) {
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(path, "", "cannot create: " + errno_text());
    try {
        write_all(fd, bytes.data(), bytes.size(), path);
        if (::fsync(fd) != 0) throw Error(path, "", "fsync failed: " + errno_text());
    } catch (...) {
        ::close(fd);
        ::unlink(path.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(path.c_str());
        throw Error(path, "", "close failed: " + errno_text());
    }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    std::string partial = path + ".partial";
    write_file_raw(partial, bytes);
    if (::rename(partial.c_str(), path.c_str()) != 0) {
        std::string e = errno_text();
        ::unlink(partial.c_str());
        throw Error(path, "", "rename failed: " + e);
    }
    fsync_dir(fs::path(path).parent_path().string().empty() ? "." : fs::path(path).parent_path().string());
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path, "", "cannot open: " + errno_text());
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(path, "", "read failed");
    return ss.str();
}

// ---- whole-folder commits ------------------------------------------------------------------

namespace {

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

// renameat2(2) by its system call: the glibc wrapper exists only from 2.28 on.
int rename2(const std::string& from, const std::string& to, unsigned flags) {
    return int(::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags));
}
// The file system cannot do this renameat2 flag (NFS, some FUSE file systems, old kernels).
bool flag_unsupported(int err) { return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP; }

const char* const kStagingTag = ".loftq-staging-";  // .<name>.loftq-staging-<pid>-<n>
const char* const kOldTag = ".loftq-old-";          // .<name>.loftq-old-<pid>-<n> (two-rename fallback)
std::atomic<unsigned> g_sibling_counter{0};

std::mutex g_hook_mutex;
std::function<void(const char*)> g_hook;

void commit_step(const char* step) {
    if (const char* crash = std::getenv("LOFTQ_TEST_CRASH_AT"); crash && std::strcmp(crash, step) == 0) ::_exit(86);
    std::function<void(const char*)> hook;
    {
        std::lock_guard<std::mutex> lock(g_hook_mutex);
        hook = g_hook;
    }
    if (hook) hook(step);
}

std::string sibling_name(const std::string& name, const char* tag) {
    return "." + name + tag + std::to_string(::getpid()) + "-" + std::to_string(g_sibling_counter++);
}

// The pid in `entry` when it is "<prefix><pid>-<n>", else 0.
long sibling_pid(const std::string& entry, const std::string& prefix) {
    if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0) return 0;
    static const std::regex tail(R"((\d{1,9})-\d{1,10})");
    std::smatch m;
    const std::string rest = entry.substr(prefix.size());
    if (!std::regex_match(rest, m, tail)) return 0;
    return std::stol(m[1].str());
}

bool process_alive(long pid) { return ::kill(pid_t(pid), 0) == 0 || errno == EPERM; }

// Removes a tree (symbolic links as links), first making its folders writable where a plain
// remove fails (a read-only folder of the old export). Errors are ignored: a leftover is removed
// by the next run.
void remove_tree(const std::string& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (!ec) return;
    ::chmod(path.c_str(), S_IRWXU);
    for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), S_IRWXU);
    fs::remove_all(path, ec);
}

// Staging folders (and, when the output exists, two-rename leftovers) that crashed or killed runs
// left beside `parent/name`: removed when their process is gone. Another live run's are kept.
void remove_dead_siblings(const fs::path& parent, const std::string& name, bool old_too) {
    std::error_code ec;
    const std::string staging = "." + name + kStagingTag, old = "." + name + kOldTag;
    std::vector<fs::path> dead;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string f = it->path().filename().string();
        long pid = sibling_pid(f, staging);
        if (!pid && old_too) pid = sibling_pid(f, old);
        if (!pid || pid == long(::getpid()) || process_alive(pid)) continue;
        if (it->is_directory(ec) && !it->is_symlink(ec)) dead.push_back(it->path());
    }
    for (const auto& d : dead) remove_tree(d.string());
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Carries every entry of the folder being replaced (`from`) that the new one (`to`) lacks into
// it: files and symbolic links as hard links (a copy where linking fails: another owner under
// protected_hardlinks, a link count at its limit), folders made and filled recursively with their
// modes. An entry the new output has wins; `drop` names entries not to carry (stale weights);
// `X.partial` beside a new `X` is an older run's debris. `rel`: the path under both roots. A
// folder on another device (a mount point) is refused: the old tree is deleted after the swap.
void carry_over(const fs::path& from, const fs::path& to, const std::string& rel,
                const std::function<bool(const std::string&)>& drop, dev_t dev) {
    std::error_code ec;
    fs::directory_iterator it(from, ec);
    if (ec) throw Error(from.string(), "", "cannot list the folder being replaced: " + ec.message());
    for (fs::directory_iterator end; it != end; it.increment(ec)) {
        const fs::path src = it->path(), dst = to / src.filename();
        const std::string fname = src.filename().string(), r = rel.empty() ? fname : rel + "/" + fname;
        struct stat ss {}, ds {};
        if (::lstat(src.c_str(), &ss) != 0) continue;  // removed meanwhile
        if (::lstat(dst.c_str(), &ds) == 0) {
            if (S_ISDIR(ss.st_mode) && S_ISDIR(ds.st_mode)) carry_over(src, dst, r, drop, dev);
            continue;
        }
        if (drop && drop(r)) continue;
        if (ends_with(fname, ".partial") && ::lstat((to / fname.substr(0, fname.size() - 8)).c_str(), &ds) == 0) continue;
        if (S_ISDIR(ss.st_mode)) {
            if (ss.st_dev != dev)
                throw Error(src.string(), "", "is a mount point inside the output folder; the folder was not replaced (unmount it or choose another output folder)");
            if (::mkdir(dst.c_str(), S_IRWXU) != 0) throw Error(dst.string(), "", "cannot create folder: " + errno_text());
            carry_over(src, dst, r, drop, dev);
            ::chmod(dst.c_str(), ss.st_mode & 07777);
            fsync_dir(dst.string());
            continue;
        }
        if (::linkat(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), 0) == 0) continue;
        const std::string why = errno_text();
        if (S_ISREG(ss.st_mode)) {
            fs::copy_file(src, dst, ec);
            if (ec) throw Error(src.string(), "", "cannot keep this file in the new output (link: " + why + ", copy: " + ec.message() + ")");
        } else if (S_ISLNK(ss.st_mode)) {
            const fs::path link = fs::read_symlink(src, ec);
            if (!ec) fs::create_symlink(link, dst, ec);
            if (ec) throw Error(src.string(), "", "cannot keep this link in the new output: " + ec.message());
        } else {
            throw Error(src.string(), "", "cannot keep this special file in the new output: " + why);
        }
    }
    if (ec) throw Error(from.string(), "", "cannot list the folder being replaced: " + ec.message());
}

}  // namespace

void set_folder_commit_hook(std::function<void(const char* step)> hook) {
    std::lock_guard<std::mutex> lock(g_hook_mutex);
    g_hook = std::move(hook);
}

StagedOutput::StagedOutput(const std::string& out_dir, FolderSwap swap) : swap_(std::move(swap)) {
    fs::path out = fs::path(out_dir).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();  // "dir/"
    out_ = out.string();
    fs::path target = out;
    std::error_code ec;
    if (fs::is_symlink(out, ec)) {
        target = fs::canonical(out, ec);
        if (ec) throw Error(out_, "", "is a symbolic link that does not lead to a folder: " + ec.message());
    }
    if (target.filename().empty() || target == target.root_path() || !target.has_parent_path())
        throw Error(out_, "", "cannot be written as a whole: it has no parent folder to stage beside");
    target_ = target.string();
    const fs::path parent = target.parent_path();
    const std::string name = target.filename().string();
    remove_dead_siblings(parent, name, fs::exists(target, ec));
    for (;;) {
        const std::string stage = (parent / sibling_name(name, kStagingTag)).string();
        if (::mkdir(stage.c_str(), 0777) == 0) {
            dir_ = stage;
            break;
        }
        if (errno != EEXIST) throw Error(stage, "", "cannot create the staging folder: " + errno_text());
    }
}

void StagedOutput::swap_in() {
    const fs::path target(target_);
    const std::string parent = target.parent_path().string(), name = target.filename().string();
    commit_step("staged");
    struct stat st {};
    if (::lstat(target_.c_str(), &st) != 0) {
        if (errno != ENOENT) throw Error(out_, "", "cannot look at the output folder: " + errno_text());
        // A new folder: one rename, which must not replace a folder made meanwhile.
        if (rename2(dir_, target_, RENAME_NOREPLACE) != 0) {
            const int e = errno;
            if (e == EEXIST || e == ENOTEMPTY)
                throw Error(out_, "", "appeared while the export ran; it is left as it was and nothing was written");
            if (!flag_unsupported(e) || ::rename(dir_.c_str(), target_.c_str()) != 0)
                throw Error(out_, "", "cannot move the finished output into place from " + dir_ + ": " + errno_text());
        }
        done_ = true;
        fsync_dir(parent);
        commit_step("swapped");
        remove_dead_siblings(parent, name, true);
        return;
    }
    if (!S_ISDIR(st.st_mode)) throw Error(out_, "", "is no longer a folder; nothing was replaced");
    carry_over(target, dir_, "", swap_.drop_old, st.st_dev);
    ::chmod(dir_.c_str(), st.st_mode & 07777);
    fsync_dir(dir_);
    commit_step("carried");
    if (rename2(dir_, target_, RENAME_EXCHANGE) == 0) {
        done_ = true;
        leftover_ = dir_;  // the old tree, under the staging name
    } else {
        const int e = errno;
        if (!flag_unsupported(e))
            throw Error(out_, "", "cannot swap the finished output in from " + dir_ + ": " + std::strerror(e));
        // No atomic exchange here: two renames. A crash between them leaves the output folder
        // absent and the old one whole under .<name>.loftq-old-<pid>-<n>.
        const std::string old = (fs::path(parent) / sibling_name(name, kOldTag)).string();
        if (::rename(target_.c_str(), old.c_str()) != 0)
            throw Error(out_, "", "cannot move the old output aside to " + old + ": " + errno_text());
        if (::rename(dir_.c_str(), target_.c_str()) != 0) {
            const std::string why = errno_text();
            ::rename(old.c_str(), target_.c_str());
            throw Error(out_, "", "cannot move the finished output into place from " + dir_ + ": " + why);
        }
        done_ = true;
        leftover_ = old;
    }
    fsync_dir(parent);
    commit_step("swapped");
    remove_tree(leftover_);
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(leftover_, ec))) leftover_.clear();
    remove_dead_siblings(parent, name, true);
}

StagedOutput::~StagedOutput() {
    if (!target_.empty()) {  // whole folder: the staging folder, or after the swap the old tree
        if (!done_) remove_tree(dir_);
        else if (!leftover_.empty()) remove_tree(leftover_);
        return;
    }
    if (done_) return;
    for (auto& e : entries_) ::unlink(e.partial.c_str());
    if (empty_folders_ == EmptyFolders::Keep) return;
    // Empty folders, deepest first (fs::remove takes a folder only when it is empty).
    std::error_code ec;
    std::vector<fs::path> dirs;
    for (fs::recursive_directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path());
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) { return a.native().size() > b.native().size(); });
    for (const auto& d : dirs) fs::remove(d, ec);
    if (empty_folders_ == EmptyFolders::RemoveUnderAndDir) fs::remove(dir_, ec);
}

std::string StagedOutput::final_path(const std::string& rel) const { return (fs::path(dir_) / rel).string(); }

std::string StagedOutput::stage(const std::string& rel) {
    std::string fin = final_path(rel);
    std::error_code ec;
    fs::create_directories(fs::path(fin).parent_path(), ec);
    if (ec) throw Error(fs::path(fin).parent_path().string(), "", "cannot create folder: " + ec.message());
    entries_.push_back({rel, fin + ".partial", fin, true});
    return fin + ".partial";
}

void StagedOutput::write(const std::string& rel, const std::string& bytes) { write_file_raw(stage(rel), bytes); }

void StagedOutput::copy_from(const std::string& rel, const std::string& source) {
    std::string partial = stage(rel);
    std::string data;
    try {
        data = read_text_file(source);
    } catch (const Error& e) {
        throw Error(source, "", std::string("cannot copy to ") + (fs::path(out_) / rel).string() + ": " + e.what());
    }
    write_file_raw(partial, data);
}

void StagedOutput::adopt(const std::string& rel, const std::string& rename_from) {
    entries_.push_back({rel, rename_from, final_path(rel), false});
}

std::vector<std::pair<std::string, std::string>> StagedOutput::staged_files() const {
    std::vector<std::pair<std::string, std::string>> v;
    for (const auto& e : entries_) v.emplace_back(e.rel, e.partial);
    return v;
}

void StagedOutput::commit() {
    std::vector<std::string> dirs;
    for (auto& e : entries_) {
        if (::rename(e.partial.c_str(), e.final.c_str()) != 0)
            throw Error(e.final, "", "rename from " + e.partial + " failed: " + errno_text());
        std::string d = fs::path(e.final).parent_path().string();
        if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    }
    for (auto& d : dirs) fsync_dir(d);
    if (!target_.empty()) swap_in();
    for (auto& e : entries_) committed_.push_back(target_.empty() ? e.final : (fs::path(out_) / e.rel).lexically_normal().string());
    done_ = true;
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool path_within(const std::string& inner, const std::string& outer) {
    std::error_code ec;
    fs::path i = fs::weakly_canonical(fs::absolute(inner), ec);
    fs::path o = fs::weakly_canonical(fs::absolute(outer), ec);
    auto ii = i.begin();
    for (auto oi = o.begin(); oi != o.end(); ++oi, ++ii) {
        if (oi->empty()) continue;  // trailing separator
        if (ii == i.end() || *ii != *oi) return false;
    }
    return true;
}

std::string file_checksum(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path, "", "cannot open: " + errno_text());
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    std::vector<char> buf(4 << 20);
    for (;;) {
        ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r < 0) {
            if (errno == EINTR) continue;
            XXH3_freeState(st);
            ::close(fd);
            throw Error(path, "", "read failed: " + errno_text());
        }
        if (r == 0) break;
        XXH3_64bits_update(st, buf.data(), size_t(r));
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    ::close(fd);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    return hex;
}

void require_utf8_path(const std::string& path, const std::string& what) {
    // Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
    const auto* p = reinterpret_cast<const unsigned char*>(path.data());
    const size_t n = path.size();
    for (size_t i = 0; i < n;) {
        const unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
        if (ok && len == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
        if (!ok) {
            std::string shown;
            for (unsigned char ch : path) {
                if (ch >= 0x20 && ch < 0x7F) shown += char(ch);
                else { char b[5]; std::snprintf(b, sizeof b, "\\x%02X", ch); shown += b; }
            }
            throw Error(shown, "", what + " is not valid UTF-8 (byte " + std::to_string(i) +
                                       "): the JSON files a run writes cannot record it; rename it");
        }
        i += len;
    }
}

std::string utc_timestamp() {
    std::time_t t = std::time(nullptr);
    std::tm tm {};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace loftq
