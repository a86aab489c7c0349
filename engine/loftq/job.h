// job.h: the LoftQ quantize job over a whole checkpoint — the one engine call the CLI and the GUI
// both make. It resolves the plan, runs the decomposition of every target weight on worker
// threads, streams weights from the mapped checkpoint and hands results to an exporter as they
// finish (memory is bounded by the weights in flight, never the model size). The exporters (the
// output formats) are one layer up: callers use run_quantize (export/quantize.h), which picks the
// exporter for QuantizeOptions::format; run_quantize_with takes any (exporter.h).
//
// Threads: with N threads and K targets, min(N, K) workers each decompose one weight at a time;
// the remaining cores go to the quantizer and the randomized SVD's thin products inside each
// weight (N / workers threads each). OpenBLAS's own thread count is process-wide and its LAPACK
// results change with it, so jobs set it to 1: results are bit-identical for any N. (Exact SVD,
// the reference, therefore runs single-threaded inside a job.)
// Events are delivered one at a time (the job serializes the callback) from worker threads: a
// receiver must only copy what it needs and return quickly (the GUI queues them to its thread).
// Cancellation: the token is polled before every step and between tensors; a cancelled job
// throws loftq::Cancelled after its workers stop, leaving no output files in place.
// Device (QuantizeOptions::device, device/compute_device.h): on CUDA each worker owns one
// CudaDecomposer on its own stream (weight_decomposer.h), so `gpu_streams` weights are in flight
// at once: while one is on the GPU, another is read from the mapped checkpoint into pinned memory
// and a finished one is exported on its worker's thread. The worker count is cut so that the
// decomposers' estimated device memory fits `gpu_memory` (default 90% of what is free at start);
// a weight too large for it alone is refused before anything runs. Events, cancel points and
// exports are the same as on the CPU; the result records the device and the peak memory.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/cancel.h"
#include "loftq/budget.h"
#include "device/compute_device.h"
#include "loftq/decompose.h"
#include "loftq/exporter.h"
#include "loftq/input_stats.h"
#include "loftq/job_share.h"
#include "loftq/plan.h"

namespace loftq {

class Checkpoint;
struct QuantizeResult;

enum class EventKind : uint8_t { JobStarted, WeightStarted, StepDone, WeightDone, Message, Writing, JobDone };

struct JobEvent {
    EventKind kind = EventKind::Message;
    int weight = -1;              // index into the resolved plan's weights
    std::string name{};           // tensor name
    int step = 0, steps = 0;      // StepDone: step t of T
    double error = 0;             // StepDone: relative error after the step; WeightDone: final
    double baseline = 0;          // QLoRA baseline of this weight (StepDone, WeightDone)
    double out_error = -1, out_baseline = -1;  // the same as output errors (QuantizeOptions::calib), -1 without
    double seconds = 0;           // StepDone: step time; WeightDone: weight time
    int weights_done = 0, weights_total = 0;
    double fraction = 0;          // work done, 0..1
    double elapsed = 0, eta = -1; // seconds; eta < 0 when unknown
    std::string message{};        // Message / Writing
};
using JobCallback = std::function<void(const JobEvent&)>;

struct WeightResult {
    WeightPlan plan;
    int rank = 0;                 // rank actually used (clamped to min(rows, cols))
    double baseline = 0, final_error = 0, w_norm = 0;
    double out_baseline = -1, out_final = -1;   // output errors with calibration (input_stats.h), else -1
    std::vector<StepReport> steps;
    double seconds = 0;
};

struct QuantizeOptions {
    std::string model;            // checkpoint path (folder, .safetensors or llama2.c .bin)
    std::string out_dir;          // "" = decompose only (no files), e.g. a GUI preview
    Plan plan;
    int threads = 0;              // 0 = all hardware threads
    uint64_t max_shard_bytes = 5'000'000'000ull;  // HF default shard size
    bool force = false;           // allow writing into a non-empty out_dir
    bool checksums = true;        // input checksums in the manifest
    std::vector<std::string> only;  // restrict to these target names (GUI "run selected"); empty = all
    ExportFormat format = ExportFormat::Hf;   // output format (exporter.h)
    bool double_quant = false;      // packed: 8-bit block scales (QLoRA-style double quantization)
    // Calibration statistics (mixed/calibration.h): each weight's output errors beside its weight
    // errors, in events, results and the metrics files. CPU only (CUDA reports -1).
    std::shared_ptr<const CalibStats> calib;
    // Where the decompositions run. The engine's default is the CPU (results identical for any
    // thread count); the CLI and the GUI default to Auto (CUDA when a usable GPU is present).
    ComputeDevice device = ComputeDevice::Cpu;
    int gpu_streams = 3;            // CUDA: weights in flight at once (one stream + worker each)
    uint64_t gpu_memory = 0;        // CUDA: device bytes the job may use; 0 = 90% of the free memory
    // Extra files for the export (e.g. the GUI's plots as PNG), asked for once every weight is
    // done and written into the same atomic commit: (path relative to out_dir, bytes). Called on
    // a job thread; it may throw loftq::Cancelled to abandon the export.
    std::function<std::vector<std::pair<std::string, std::string>>(const QuantizeResult&)> extra_files;
    // A run spread over processes (job_share.h; `mpirun -np N loftq quantize`): this rank
    // decomposes its share of the weights; rank 0 alone writes, the others only send. The
    // cancel token given to the job must be the one the transport cancels on a peer's abort.
    // Null or one rank: the whole job here.
    std::shared_ptr<WeightExchange> share;
};

struct QuantizeResult {
    ResolvedPlan plan;
    std::vector<WeightResult> weights;  // same order as plan.weights
    PlanSize size;
    double seconds = 0;
    std::vector<std::string> files;     // files written (absolute), empty for a dry run
    ComputeDevice device = ComputeDevice::Cpu;  // where it ran (Auto resolved)
    std::string device_name;            // "cpu" or the GPU's name
    int streams = 0;                    // CUDA: decomposers (streams) used
    uint64_t device_peak_bytes = 0;     // CUDA: sum over streams of each one's peak device memory
    uint64_t pinned_bytes = 0;          // CUDA: page-locked host staging, all streams
    int ranks = 1;                      // processes the run was spread over (QuantizeOptions::share)
    int weights_here = 0;               // of them decomposed by this process
};

// The job, writing through make_exporter's exporter when it is set (none: decompose only).
// Errors from a weight's decomposition are rethrown naming that weight (loftq::Error's tensor).
QuantizeResult run_quantize_with(const QuantizeOptions& opt, const ExporterFactory& make_exporter,
                                 const JobCallback& on_event, const CancelToken& cancel);

// The planner's view of a checkpoint's tensors (names, dtypes, shapes; no data read).
std::vector<TensorMeta> tensor_metas(const Checkpoint& ck);

}  // namespace loftq
