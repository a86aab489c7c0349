// quantize.cpp: `loftq quantize MODEL --out DIR [settings] [--threads N] [--plan FILE]`:
// runs the LoftQ job and writes the Hugging Face LoftQ layout. Ctrl-C cancels cleanly (the
// first SIGINT sets the job's cancel token; a second one kills the process as usual).
// Under `mpirun -np N` (cli/world.h) the ranks split the weights (loftq/job_share.h): rank 0
// prints and writes the same files a single process would; the others decompose and send.
#include <csignal>
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "cli/events.h"
#include "cli/progress.h"
#include "cli/world.h"
#include "dist/weight_exchange.h"
#include "export/quantize.h"

namespace loftq::cli {

namespace {
struct QuantizeArgs {
    std::string model, out, max_shard = "5GB", gpu_memory = "0";
    ExportFormat format = ExportFormat::Hf;
    ComputeDevice device = ComputeDevice::Auto;
    int threads = 0, gpu_streams = 3;
    bool force = false, dry_run = false, no_checksums = false, quiet = false, double_quant = false;
    PlanFlags flags;
    CalibFlags calib;
};

void run_quantize_cmd(const QuantizeArgs& a) {
    QuantizeOptions opt;
    opt.model = a.model;
    opt.out_dir = a.dry_run ? "" : a.out;
    opt.plan = a.flags.make_plan();
    opt.threads = a.threads;
    opt.force = a.force;
    opt.checksums = !a.no_checksums;
    opt.max_shard_bytes = parse_size(a.max_shard);
    opt.format = a.format;
    opt.double_quant = a.double_quant;
    opt.device = a.device;
    opt.gpu_streams = a.gpu_streams;
    opt.gpu_memory = parse_size(a.gpu_memory);
    opt.calib = a.calib.collect(a.model, a.threads, false);
    if (Comm* w = world()) opt.share = make_weight_exchange(*w);
    CancelToken cancel;
    WorldCancel world_cancel(cancel);
    const bool root = is_root();
    ProgressPrinter printer(a.quiet);
    struct FinishLine {  // ends the progress line on any exit (a cancel or an error too)
        ProgressPrinter& printer;
        ~FinishLine() { printer.finish(); }
    };
    QuantizeResult r;
    {
        SigintGuard sigint(cancel);
        FinishLine finish{printer};
        EventWriter* ev = events();
        r = run_quantize(opt,
                         root ? JobCallback([&](const JobEvent& e) {
                             printer(e);
                             if (ev) ev->write(event_json(e));
                         })
                              : JobCallback(),
                         cancel);
    }
    if (!root) return;  // rank 0 reports the whole run

    double sb = 0, sf = 0;
    for (auto& w : r.weights) { sb += w.baseline; sf += w.final_error; }
    size_t n = r.weights.size();
    std::printf("%zu weights in %s on %s%s: mean relative error QLoRA %.5f -> LoftQ %.5f\n", n,
                human_seconds(r.seconds).c_str(), r.device_name.c_str(),
                r.ranks > 1 ? (" x " + std::to_string(r.ranks) + " ranks").c_str() : "", n ? sb / double(n) : 0.0,
                n ? sf / double(n) : 0.0);
    if (r.device == ComputeDevice::Cuda)
        std::printf("cuda: %d streams, peak device memory %s, pinned host %s\n", r.streams,
                    human_bytes(double(r.device_peak_bytes)).c_str(), human_bytes(double(r.pinned_bytes)).c_str());
    if (opt.calib) {
        double ob = 0, of = 0;
        size_t k = 0;
        for (auto& w : r.weights)
            if (w.out_baseline >= 0) ob += w.out_baseline, of += w.out_final, ++k;
        if (k) std::printf("mean output error (on %lld calibration tokens) QLoRA %.5f -> LoftQ %.5f\n", (long long)opt.calib->tokens,
                           ob / double(k), of / double(k));
    }
    std::printf("plan size %s (%.3f bits/weight on targets, %.2f bits per param overall; fp16 model %s)\n",
                human_bytes(double(r.size.total_bytes)).c_str(), r.size.target_bits_per_weight(), r.size.bits_per_param(),
                human_bytes(double(r.size.fp16_bytes)).c_str());
    if (!a.dry_run) std::printf("wrote %s (%zu files)\n", a.out.c_str(), r.files.size());
}
}  // namespace

void add_quantize(CLI::App& app) {
    auto args = std::make_shared<QuantizeArgs>();
    CLI::App* sub = app.add_subcommand("quantize", "Run LoftQ and write the Hugging Face LoftQ layout");
    sub->add_option("MODEL", args->model, "HF folder, .safetensors file or llama2.c .bin")->required();
    auto* out = sub->add_option("-o,--out", args->out, "Output folder");
    sub->add_flag("--dry-run", args->dry_run, "Decompose and report errors, write nothing");
    sub->callback([args, out] {
        if (!args->dry_run && out->count() == 0) throw CLI::RequiredError("--out");
        run_quantize_cmd(*args);
    });
    args->flags.add_to(sub);
    args->calib.add_to(sub);
    add_events_option(sub);
    sub->add_option("--threads", args->threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    add_device_options(sub, args->device, ": where the decompositions run");
    sub->add_option("--gpu-streams", args->gpu_streams, "CUDA: weights in flight at once, one stream each (default 3)")
        ->check(CLI::Range(1, 64));
    sub->add_option("--gpu-memory", args->gpu_memory, "CUDA: device memory the job may use, e.g. 20GB (default: 90% of free)");
    sub->add_option("--max-shard-size", args->max_shard, "Largest output shard, e.g. 5GB (default), 500MB");
    sub->add_flag("--force", args->force, "Write into a non-empty output folder");
    add_enum_option(sub, "--format", args->format, kExportFormatNames, "Output format: hf (default), packed (docs/FORMAT.md) or bnb-nf4");
    sub->add_flag("--double-quant", args->double_quant, "packed: store block scales as 8-bit codes (QLoRA-style double quantization)");
    sub->add_flag("--no-checksums", args->no_checksums, "Skip input checksums in the manifest");
    sub->add_flag("-q,--quiet", args->quiet, "No progress output");
}

}  // namespace loftq::cli
