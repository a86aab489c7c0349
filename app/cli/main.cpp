// main.cpp: the `loftq` command line: subcommand registration and the one place where
// engine errors become a single line on stderr and an exit code (1 error, 2 usage, 130 Ctrl-C,
// 143 SIGTERM: both cancel cleanly).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "cli/common.h"
#include "core/error.h"

int main(int argc, char** argv) {
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
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const loftq::Cancelled&) {
        const int sig = loftq::cli::cancel_signal();
        std::fprintf(stderr, "\nloftq: cancelled%s; no output was left in place\n", sig == SIGTERM ? " (SIGTERM)" : "");
        return 128 + (sig ? sig : SIGINT);
    } catch (const loftq::Error& e) {
        std::fprintf(stderr, "loftq: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "loftq: error: out of memory (try fewer --threads: each worker holds one weight)\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loftq: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
