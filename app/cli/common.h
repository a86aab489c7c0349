// common.h: what the `loftq` subcommands share: their registration functions, settings
// flags that map onto a plan's defaults, and small formatting helpers. The CLI stays thin: it
// fills engine structs and calls the same engine functions the GUI calls.
#pragma once
#include <cctype>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "core/cancel.h"
#include "core/name_table.h"
#include "core/units.h"  // human_bytes
#include "device/compute_device.h"
#include "loftq/input_stats.h"
#include "loftq/plan.h"
#include "model/device_llama.h"

namespace loftq::cli {

// An option whose value is one of an enum's names (core/name_table.h), stored into `target` (an E
// or a std::optional<E>, left as it is when the flag is absent). Another value is refused as a
// usage error naming the flag, the value and the choices: "--gemm: unknown GEMM mode 'bf8'
// (expected tf32, fp32 or bf16)". ignore_case: "CUDA" is taken for "cuda" (the names are lower case).
template <class T, class E, size_t N>
CLI::Option* add_enum_option(CLI::App* sub, const std::string& flag, T& target, const NameTable<E, N>& names,
                             const std::string& help, bool ignore_case = false) {
    auto set = [&target, &names, flag, ignore_case](const std::string& value) {
        std::string s = value;
        if (ignore_case)
            for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
        const auto v = names.find(s);
        if (!v)
            throw CLI::ValidationError(flag, "unknown " + std::string(names.what) + " '" + value + "' (expected " +
                                                 names.choices() + ")");
        target = *v;
    };
    return sub->add_option_function<std::string>(flag, set, help)->type_name(names.choices("|", nullptr));
}

// Flags that override a plan's defaults when given (--quant, --block, --rank, --iters, --svd,
// --seed, --lora-alpha, --plan).
struct PlanFlags {
    std::string plan_file;
    std::optional<std::string> quant;
    std::optional<SvdMethod> svd;
    std::optional<int> block, rank, iters;
    std::optional<uint64_t> seed;
    std::optional<double> lora_alpha;
    void add_to(CLI::App* app);
    Plan make_plan() const;  // the plan file (or defaults) with the flags applied; throws loftq::Error
    bool given() const { return !plan_file.empty() || quant || svd || block || rank || iters || seed || lora_alpha; }
};

// Calibration for output errors (--calib FILE, --calib-tokens, --calib-seq, --tokenizer).
struct CalibFlags {
    std::string file, tokenizer;
    int64_t tokens = 4096;
    int seq = 256;
    void add_to(CLI::App* app);
    // null without --calib. A model whose forward cannot run: with fall_back, a message and null;
    // else the error. Any other problem (too few tokens, a tokenizer mismatch) throws.
    std::shared_ptr<const CalibStats> collect(const std::string& model, int threads, bool fall_back) const;
};

void add_inspect(CLI::App& app);
void add_quantize(CLI::App& app);
void add_plan(CLI::App& app);
void add_plan_auto(CLI::App* plan);   // `plan auto` (cli/mixed.cpp)
void add_eval_plan(CLI::App& app);
void add_make_demo(CLI::App& app);
void add_finetune(CLI::App& app);
void add_bench_finetune(CLI::App& app);
void add_eval(CLI::App& app);
void add_convert(CLI::App& app);
void add_experiment(CLI::App& app);
void add_unpack(CLI::App& app);
void add_verify(CLI::App& app);
void add_generate(CLI::App& app);
void add_export_gguf(CLI::App& app);
void add_attach(CLI::App& app);      // `loftq attach RUN` (cli/launch.cpp)
// `quantize|finetune ... --run-on TEMPLATE`: strips the launcher's options, runs the rest through
// dist/launcher.h and follows it; its exit code, or nullopt when the command line has no --run-on.
std::optional<int> run_on(int argc, char** argv);

// Routes the first Ctrl-C (SIGINT) or SIGTERM (sent by `timeout`, systemd, docker) to `token`
// while it lives, so that the run cancels cleanly and leaves nothing half-written; a second signal
// kills the process as usual. Restores the previous handlers on any exit. One at a time.
class SigintGuard {
public:
    explicit SigintGuard(CancelToken& token);
    ~SigintGuard();
    SigintGuard(const SigintGuard&) = delete;
    SigintGuard& operator=(const SigintGuard&) = delete;

private:
    void (*old_int_)(int);
    void (*old_term_)(int);
};
// The signal that cancelled the run (SIGINT or SIGTERM), 0 when none: the exit code is 128 + it.
int cancel_signal();

std::string human_seconds(double seconds);    // "1m05s"
// Where a command runs (device/compute_device.h): --device auto|cpu|cuda, any case (sets `device`
// to Auto first: the CLI's default); for fine-tuning also --gemm tf32|fp32|bf16 and --recompute
// auto|on|off (model/device_llama.h) when their targets are given. `where` ends the --device help line.
void add_device_options(CLI::App* sub, ComputeDevice& device, const std::string& where, GemmMode* gemm = nullptr,
                        RecomputeMode* recompute = nullptr);
uint64_t parse_size(const std::string& text); // "5GB", "500MB", "1GiB", "123" -> bytes; throws loftq::Error

}  // namespace loftq::cli
