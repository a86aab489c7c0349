// fsutil.cpp: see fsutil.h. POSIX calls (open/pwrite/fsync/rename) so errors carry errno text.
#include "core/fsutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
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

StagedOutput::~StagedOutput() {
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
    entries_.push_back({fin + ".partial", fin, true});
    return fin + ".partial";
}

void StagedOutput::write(const std::string& rel, const std::string& bytes) { write_file_raw(stage(rel), bytes); }

void StagedOutput::copy_from(const std::string& rel, const std::string& source) {
    std::string partial = stage(rel);
    std::string data;
    try {
        data = read_text_file(source);
    } catch (const Error& e) {
        throw Error(source, "", std::string("cannot copy to ") + final_path(rel) + ": " + e.what());
    }
    write_file_raw(partial, data);
}

void StagedOutput::adopt(const std::string& rel, const std::string& rename_from) {
    entries_.push_back({rename_from, final_path(rel), false});
}

void StagedOutput::commit() {
    for (auto& e : entries_) {
        if (::rename(e.partial.c_str(), e.final.c_str()) != 0)
            throw Error(e.final, "", "rename from " + e.partial + " failed: " + errno_text());
        committed_.push_back(e.final);
    }
    std::vector<std::string> dirs;
    for (auto& f : committed_) {
        std::string d = fs::path(f).parent_path().string();
        if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    }
    for (auto& d : dirs) fsync_dir(d);
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
