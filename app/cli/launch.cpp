// launch.cpp: `loftq quantize|finetune ... --run-on TEMPLATE [--ranks N] [--nodes K] [--run-dir RUN]
// [--remote-dir DIR] [--remote-loftq PATH]` and `loftq attach RUN` (dist/launcher.h,
// docs/RUN-ON.md). The run is started detached on the target; its events stream back into the
// same printers a local run uses; Ctrl-C asks the run to stop and waits for its exit line; at the
// end the target's files are fetched into RUN and loftq exits with the run's exit code. A lost
// connection says how to re-attach and exits with kExitConnectionLost (75).
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>

#include "cli/common.h"
#include "cli/progress.h"
#include "cli/train_printer.h"
#include "core/error.h"
#include "dist/launcher.h"

namespace fs = std::filesystem;

namespace loftq::cli {

namespace {

// Follows a started or attached run to its end (see the file comment); the exit code to use.
int follow(RemoteRun& run, bool quiet, bool fetch) {
    ProgressPrinter job_printer(quiet);
    TrainPrinter train_printer(quiet);
    auto on_event = [&](const ParsedEvent& e) {
        if (e.job) job_printer(*e.job);
        if (e.train) train_printer(*e.train);
    };
    CancelToken cancel;
    StreamEnd end;
    {
        SigintGuard sigint(cancel);   // the first Ctrl-C: stop the run there and wait for its end; a second ends this process
        end = run.stream(on_event, cancel, true);
        if (end.kind == StreamEnd::Cancelled) {
            job_printer.finish();
            train_printer.finish();
            std::fprintf(stderr, "\nloftq: stopping the run on %s (it cancels cleanly; Ctrl-C again leaves it running)\n",
                         run.where().c_str());
            end = run.stop_and_follow(on_event, 0);
        }
    }
    job_printer.finish();
    train_printer.finish();
    if (end.kind == StreamEnd::Lost) {
        std::fprintf(stderr,
                     "loftq: lost the connection to %s (%s); the run goes on there: `loftq attach %s` follows it again\n",
                     run.where().c_str(), end.error.c_str(), run.run_dir().c_str());
        return kExitConnectionLost;
    }
    if (fetch) run.fetch();
    if (end.code == 0) {
        std::printf("run on %s finished; its files are in %s (output.log: what loftq printed there)\n", run.where().c_str(),
                    run.run_dir().c_str());
    } else if (end.code >= 128) {
        std::fprintf(stderr, "loftq: the run on %s was cancelled (exit %d); no output was left in place there\n",
                     run.where().c_str(), end.code);
    } else {
        std::fprintf(stderr, "loftq: error on %s: %s (exit %d; %s/output.log has the run's output)\n", run.where().c_str(),
                     end.error.c_str(), end.code, run.run_dir().c_str());
    }
    return end.code;
}

std::string default_run_dir(const std::string& command) {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%SZ", &tm);
    return "runs/" + command + "-" + buf;
}

// This program, for a launcher on this machine (the build folder's loftq need not be on PATH).
std::string this_program() {
    std::error_code ec;
    const fs::path p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("loftq") : p.string();
}

}  // namespace

std::optional<int> run_on(int argc, char** argv) {
    if (argc < 2) return std::nullopt;
    const std::string command = argv[1];
    if (command != "quantize" && command != "finetune") return std::nullopt;
    std::vector<std::string> args = {command};
    std::optional<std::string> templ;
    std::string run_dir, remote_loftq;
    RunTarget target;
    bool quiet = false;
    try {
        for (int i = 2; i < argc; ++i) {
            std::string a = argv[i];
            std::optional<std::string> value;
            const size_t eq = a.find('=');
            if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
                value = a.substr(eq + 1);
                a = a.substr(0, eq);
            }
            static const char* const kOptions[] = {"--run-on", "--ranks", "--nodes", "--run-dir", "--remote-dir", "--remote-loftq"};
            bool ours = false;
            for (const char* o : kOptions) ours = ours || a == o;
            if (!ours) {
                if (a == "-q" || a == "--quiet") quiet = true;
                args.push_back(argv[i]);
                continue;
            }
            if (!value) {
                if (i + 1 >= argc) throw Error(a + " needs a value");
                value = argv[++i];
            }
            auto count = [&](const std::string& v) {
                try {
                    size_t used = 0;
                    const int n = std::stoi(v, &used);
                    if (used == v.size() && n >= 1) return n;
                } catch (const std::exception&) {
                }
                throw Error(a + " " + v + ": expected a whole number >= 1");
            };
            if (a == "--run-on") templ = *value;
            else if (a == "--ranks") target.ranks = count(*value);
            else if (a == "--nodes") target.nodes = count(*value);
            else if (a == "--run-dir") run_dir = *value;
            else if (a == "--remote-dir") target.remote_dir = *value;
            else remote_loftq = *value;
        }
        if (!templ) {
            if (args.size() + 1 < size_t(argc))  // --ranks & co. without --run-on
                throw Error("--ranks, --nodes, --run-dir, --remote-dir and --remote-loftq go with --run-on TEMPLATE");
            return std::nullopt;
        }
        target.templ = *templ;
        const bool ssh = parse_template(target).over_ssh();
        target.loftq = !remote_loftq.empty() ? remote_loftq : ssh ? std::string("loftq") : this_program();
        if (run_dir.empty()) run_dir = default_run_dir(command);
        RemoteRun run = RemoteRun::start(target, args, run_dir);
        std::fprintf(stderr, "loftq: started on %s (process group %ld): %s\nloftq: run folder %s (there: %s); `loftq attach %s` re-attaches\n",
                     run.where().c_str(), run.record().pid, shell_join(run.record().command).c_str(), run_dir.c_str(),
                     run.record().remote_dir.c_str(), run_dir.c_str());
        return follow(run, quiet, true);
    } catch (const Error& e) {
        std::fprintf(stderr, "loftq: error: %s\n", e.what());
        return 1;
    }
}

void add_attach(CLI::App& app) {
    struct Args {
        std::string run_dir;
        bool quiet = false, no_fetch = false;
    };
    auto a = std::make_shared<Args>();
    auto* sub = app.add_subcommand("attach", "Follow a run started with --run-on again from its run folder (after a lost connection)");
    sub->add_option("RUN", a->run_dir, "The run folder (holds launch.json)")->required();
    sub->add_flag("-q,--quiet", a->quiet, "No progress output");
    sub->add_flag("--no-fetch", a->no_fetch, "Do not copy the target's files into RUN at the end");
    sub->callback([a] {
        RemoteRun run = RemoteRun::attach(a->run_dir);
        std::fprintf(stderr, "loftq: attached to the run on %s (%s, started %s)\n", run.where().c_str(),
                     run_state_name(run.record().state), run.record().started.c_str());
        const int code = follow(run, a->quiet, !a->no_fetch);
        if (code != 0) throw CLI::RuntimeError(code);
    });
}

}  // namespace loftq::cli
