// main.cpp: the `loftq` command line: subcommand registration and the one place where
// engine errors become a single line on stderr and an exit code (1 error, 2 usage, 130 Ctrl-C,
// 143 SIGTERM: both cancel cleanly). Under mpirun / srun it first joins the run's ranks
// (cli/world.h) and at the end tells the others when this one failed, then waits for them.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "cli/common.h"
#include "cli/events.h"
#include "cli/world.h"
#include "core/error.h"

int main(int argc, char** argv) {
    // `quantize|finetune ... --run-on TEMPLATE`: started through a launcher and followed (cli/launch.cpp).
    if (auto code = loftq::cli::run_on(argc, argv)) return *code;
    CLI::App app{"loftq: LoftQ quantization of LLM checkpoints (LoRA-fine-tuning-aware quantization)", "loftq"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("loftq ") + LOFTQ_VERSION);
    loftq::cli::add_inspect(app);
    loftq::cli::add_quantize(app);
    loftq::cli::add_plan(app);
    loftq::cli::add_make_demo(app);
    loftq::cli::add_finetune(app);
    loftq::cli::add_bench_finetune(app);
    loftq::cli::add_eval(app);
    loftq::cli::add_eval_plan(app);
    loftq::cli::add_convert(app);
    loftq::cli::add_experiment(app);
    loftq::cli::add_unpack(app);
    loftq::cli::add_verify(app);
    loftq::cli::add_generate(app);
    loftq::cli::add_export_gguf(app);
    loftq::cli::add_attach(app);
    std::string error;
    int code = 0;
    try {
        if (loftq::cli::start_world() > 1) {
            const std::string command = argc > 1 ? argv[1] : "";
            // --help / --version print on every rank, harmlessly; other commands run in one process only.
            if (command != "quantize" && command != "finetune" && command.rfind("-", 0) != 0)
                loftq::cli::require_single_process(command.c_str());
        }
        loftq::cli::open_events_early(argc, argv);
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        code = loftq::cli::is_root() ? app.exit(e) : (e.get_exit_code() ? 2 : 0);
        if (code) error = code >= 128 ? std::string("cancelled") : std::string(e.what());
    } catch (const loftq::Cancelled&) {
        const int sig = loftq::cli::cancel_signal();
        auto* w = loftq::cli::world();
        if (w && !w->abort_reason().empty()) {  // another rank stopped the run (rank 0 prints why)
            code = 1;
        } else {
            std::fprintf(stderr, "\nloftq: %scancelled%s; no output was left in place\n", loftq::cli::rank_prefix().c_str(),
                         sig == SIGTERM ? " (SIGTERM)" : "");
            code = 128 + (sig ? sig : SIGINT);
            error = "cancelled";
        }
    } catch (const loftq::Error& e) {
        std::fprintf(stderr, "loftq: %serror: %s\n", loftq::cli::rank_prefix().c_str(), e.what());
        code = 1;
        error = e.what();
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "loftq: %serror: out of memory (try fewer --threads: each worker holds one weight)\n",
                     loftq::cli::rank_prefix().c_str());
        code = 1;
        error = "out of memory";
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loftq: %serror: %s\n", loftq::cli::rank_prefix().c_str(), e.what());
        code = 1;
        error = e.what();
    }
    loftq::cli::close_events(code, error);
    return loftq::cli::finish_world(code, error);
}
