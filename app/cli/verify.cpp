// verify.cpp: `loftq verify EXPORT`: checks every file an export wrote against the size and
// XXH3-64 checksum its loftq_metrics.json recorded (export/verify.h). One line per problem,
// naming the file; files the manifest does not list are noted. Exit codes: 0 every listed file
// matches, 1 a listed file is missing or changed (or the manifest is damaged), 3 the folder
// cannot be verified (no loftq_metrics.json, or one written before checksums were recorded).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/common.h"
#include "export/verify.h"

namespace loftq::cli {

namespace {
constexpr int kCannotVerify = 3;
struct VerifyArgs {
    std::string dir;
    bool quiet = false;
};
}  // namespace

void add_verify(CLI::App& app) {
    auto args = std::make_shared<VerifyArgs>();
    CLI::App* sub = app.add_subcommand("verify", "Check an export's files against the checksums in its loftq_metrics.json "
                                                 "(exit 0 all match, 1 missing or changed, 3 cannot be verified)");
    sub->add_option("EXPORT", args->dir, "Export folder (hf, packed, bnb-nf4 or unpacked)")->required();
    sub->add_flag("-q,--quiet", args->quiet, "Print only the problems");
    sub->callback([args] {
        const VerifyReport r = verify_export(args->dir);
        if (r.status == VerifyReport::Status::NoManifest || r.status == VerifyReport::Status::NoChecksums) {
            std::fprintf(stderr, "loftq: cannot verify: %s\n", r.cannot_verify_reason().c_str());
            throw CLI::RuntimeError(kCannotVerify);
        }
        for (const auto& p : r.problems)
            std::printf("%s: %s\n", (std::filesystem::path(r.dir) / p.file).string().c_str(), p.what.c_str());
        if (!args->quiet)
            for (const auto& u : r.unlisted)
                std::printf("note: %s: not listed in the manifest (not checked)\n",
                            (std::filesystem::path(r.dir) / u).string().c_str());
        if (!r.ok()) {
            std::fflush(stdout);
            std::fprintf(stderr, "loftq: %s does not match its manifest: %zu problem%s\n", r.dir.c_str(), r.problems.size(),
                         r.problems.size() == 1 ? "" : "s");
            throw CLI::RuntimeError(1);
        }
        if (!args->quiet)
            std::printf("ok: %zu files, %s, match %s\n", r.files_checked, human_bytes(double(r.bytes_checked)).c_str(),
                        r.manifest.c_str());
    });
}

}  // namespace loftq::cli
