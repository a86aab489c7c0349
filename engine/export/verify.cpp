// verify.cpp: see verify.h.
#include "export/verify.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/json_read.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
const char* const kManifest = "loftq_metrics.json";

// A manifest path that stays inside the folder: relative, no "." or ".." parts, no empty parts.
bool safe_rel(const std::string& rel) {
    if (rel.empty() || rel.front() == '/' || rel.find('\0') != std::string::npos) return false;
    size_t start = 0;
    for (;;) {
        const size_t end = rel.find('/', start);
        const std::string part = rel.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (part.empty() || part == "." || part == "..") return false;
        if (end == std::string::npos) return true;
        start = end + 1;
    }
}
}  // namespace

std::string VerifyReport::cannot_verify_reason() const {
    switch (status) {
        case Status::NoManifest:
            return manifest + " is missing: not a LoftQ export, or an unfinished one; it cannot be verified";
        case Status::NoChecksums:
            return manifest + " records no checksums (\"outputs\"): the export was written before loftq recorded them; "
                              "it cannot be verified";
        default: return "";
    }
}

VerifyReport verify_export(const std::string& dir) {
    VerifyReport r;
    r.dir = dir;
    r.manifest = (fs::path(dir) / kManifest).string();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error(dir, "", "not a folder (an export is a folder holding loftq_metrics.json)");
    if (!fs::exists(r.manifest, ec)) {
        r.status = VerifyReport::Status::NoManifest;
        return r;
    }
    auto fail = [&](const std::string& file, const std::string& what) {
        r.problems.push_back({file, what});
        r.status = VerifyReport::Status::Failed;
    };
    nlohmann::json j;
    try {
        j = read_json_file(r.manifest, "export manifest");   // the checked parser: depth limit, no duplicate keys
    } catch (const Error& e) {
        fail(kManifest, "cannot be read (damaged?): " + e.detail);
        return r;
    }
    if (!j.is_object() || !j.contains("outputs")) {
        r.status = VerifyReport::Status::NoChecksums;
        return r;
    }
    const nlohmann::json& outs = j["outputs"];
    if (!outs.is_object()) {
        fail(kManifest, "\"outputs\" is not an object (damaged?)");
        return r;
    }
    std::set<std::string> listed;
    for (const auto& [rel, e] : outs.items()) {
        listed.insert(rel);
        if (!safe_rel(rel) || rel == kManifest) {
            fail(kManifest, "lists the path '" + rel + "', which is not a file inside the export (damaged or edited)");
            continue;
        }
        if (!e.is_object() || !e.contains("bytes") || !e["bytes"].is_number_unsigned() || !e.contains("xxh3_64") ||
            !e["xxh3_64"].is_string()) {
            fail(kManifest, "the entry of '" + rel + "' lacks \"bytes\" or \"xxh3_64\" (damaged?)");
            continue;
        }
        const uint64_t want_bytes = e["bytes"].get<uint64_t>();
        const std::string want_sum = e["xxh3_64"].get<std::string>();
        const std::string path = (fs::path(dir) / rel).string();
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) {
            fail(rel, "missing");
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            fail(rel, "is not a regular file");
            continue;
        }
        if (uint64_t(st.st_size) != want_bytes) {
            fail(rel, "size " + std::to_string(st.st_size) + " bytes, the manifest says " + std::to_string(want_bytes));
            continue;
        }
        std::string sum;
        try {
            sum = file_checksum(path);
        } catch (const Error& err) {
            fail(rel, "cannot be read: " + err.detail);
            continue;
        }
        if (sum != want_sum) {
            fail(rel, "changed (XXH3-64 " + sum + ", the manifest says " + want_sum + ")");
            continue;
        }
        ++r.files_checked;
        r.bytes_checked += want_bytes;
    }
    // Files the manifest does not list (a user's notes, plots of a later run): reported only.
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec)) continue;
        const std::string rel = it->path().lexically_relative(dir).generic_string();
        if (rel != kManifest && !listed.count(rel)) r.unlisted.push_back(rel);
    }
    std::sort(r.unlisted.begin(), r.unlisted.end());
    return r;
}

void require_verified(const VerifyReport& r) {
    if (r.status != VerifyReport::Status::Failed) return;
    const auto& p = r.problems.front();
    std::string more;
    if (r.problems.size() > 1) more = " (and " + std::to_string(r.problems.size() - 1) + " more problem" + (r.problems.size() > 2 ? "s" : "") + ")";
    throw Error((fs::path(r.dir) / p.file).string(), "",
                p.what + more + ": the export does not match its manifest (" + kManifest + "); `loftq verify " + r.dir +
                    "` lists every problem");
}

nlohmann::ordered_json outputs_manifest(const StagedOutput& staged) {
    nlohmann::ordered_json outs = nlohmann::ordered_json::object();
    for (const auto& [rel, path] : staged.staged_files()) {
        std::error_code ec;
        const uint64_t bytes = fs::file_size(path, ec);
        if (ec) throw Error(path, "", "cannot read the size of a written file: " + ec.message());
        outs[fs::path(rel).lexically_normal().generic_string()] = {{"bytes", bytes}, {"xxh3_64", file_checksum(path)}};
    }
    return outs;
}

}  // namespace loftq
