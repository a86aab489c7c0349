// util.cpp: PlanFlags and formatting helpers shared by the subcommands.
#include <cctype>
#include <cmath>
#include <cstdio>

#include <csignal>

#include "cli/common.h"
#include "core/error.h"

namespace loftq::cli {

namespace {
CancelToken* g_sigint_token = nullptr;
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_cancel_signal(int sig) {
    if (g_signal == 0) g_signal = sig;
    if (g_sigint_token) g_sigint_token->cancel();
    std::signal(sig, SIG_DFL);   // a second one ends the process
}
}  // namespace

SigintGuard::SigintGuard(CancelToken& token) {
    g_sigint_token = &token;
    old_int_ = std::signal(SIGINT, on_cancel_signal);
    old_term_ = std::signal(SIGTERM, on_cancel_signal);
}

SigintGuard::~SigintGuard() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
    g_sigint_token = nullptr;
}

int cancel_signal() { return int(g_signal); }

void PlanFlags::add_to(CLI::App* app) {
    app->add_option("--plan", plan_file, "Plan file (*.loftq.json); flags below override its defaults")->check(CLI::ExistingFile);
    app->add_option("--quant", quant, "Quantizer: nf4, nf3, nf2, int2, int3, int4, int8 (default nf4)");
    app->add_option("--block", block, "Elements per scale block (default 64)")->check(CLI::Range(1, 1 << 20));
    app->add_option("--rank", rank, "LoRA rank r (default 16)")->check(CLI::Range(0, 65536));
    app->add_option("--iters", iters, "Alternating steps T; 0 = QLoRA baseline (default 5)")->check(CLI::Range(0, 100));
    add_enum_option(app, "--svd", svd, kSvdMethodNames, "randomized (default) or exact");
    app->add_option("--seed", seed, "Seed for the randomized SVD and QLoRA init (default 0)");
    app->add_option("--lora-alpha", lora_alpha, "PEFT lora_alpha (default: each weight's rank, scale 1)")->check(CLI::PositiveNumber);
}

Plan PlanFlags::make_plan() const {
    Plan p = plan_file.empty() ? Plan{} : load_plan(plan_file);
    if (quant) {
        auto k = quant_kind_from_name(*quant);
        if (!k) throw Error("--quant " + *quant + ": unknown quantizer (expected nf4, nf3, nf2, int2, int3, int4, int8)");
        p.defaults.quant = *k;
    }
    if (block) p.defaults.block = *block;
    if (rank) p.defaults.rank = *rank;
    if (iters) p.defaults.iters = *iters;
    if (svd) p.defaults.svd = *svd;
    if (seed) p.seed = *seed;
    if (lora_alpha) p.lora_alpha = *lora_alpha;
    return p;
}

void add_device_options(CLI::App* sub, ComputeDevice& device, const std::string& where, GemmMode* gemm,
                        RecomputeMode* recompute) {
    device = ComputeDevice::Auto;
    add_enum_option(sub, "--device", device, kComputeDeviceNames,
                    "auto (default: CUDA when a usable GPU is present, else the CPU), cpu or cuda" + where, true);
    if (gemm)
        add_enum_option(sub, "--gemm", *gemm, kGemmModeNames,
                        "CUDA: frozen-base GEMMs on tf32 tensor cores (default), exact fp32, or bf16 inputs with fp32 "
                        "accumulation (bf16 base weights, as PyTorch bf16 autocast)");
    if (recompute)
        add_enum_option(sub, "--recompute", *recompute, kRecomputeModeNames,
                        "CUDA activation checkpointing: auto (default: when the activations would not fit), on or off");
}

std::string human_seconds(double s) {
    char buf[32];
    if (s < 0) return "--";
    if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
    else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
    else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
    return buf;
}

uint64_t parse_size(const std::string& text) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit((unsigned char)text[i]) || text[i] == '.')) ++i;
    if (i == 0) throw Error("size '" + text + "': expected a number with an optional unit (KB, MB, GB, KiB, MiB, GiB)");
    double v = std::stod(text.substr(0, i));
    std::string unit = text.substr(i);
    for (auto& c : unit) c = char(std::toupper((unsigned char)c));
    double mul = 1;
    if (unit == "" || unit == "B") mul = 1;
    else if (unit == "KB") mul = 1e3;
    else if (unit == "MB") mul = 1e6;
    else if (unit == "GB") mul = 1e9;
    else if (unit == "KIB") mul = 1024.0;
    else if (unit == "MIB") mul = 1024.0 * 1024;
    else if (unit == "GIB") mul = 1024.0 * 1024 * 1024;
    else throw Error("size '" + text + "': unknown unit '" + unit + "'");
    return uint64_t(std::llround(v * mul));
}

}  // namespace loftq::cli
