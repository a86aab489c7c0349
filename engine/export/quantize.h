// quantize.h: the quantize job with its output formats, the one call the CLI and the GUI make to
// quantize a checkpoint (loftq/job.h has the options, events and results). Formats, chosen by
// QuantizeOptions::format (loftq/exporter.h; names as the CLI and files spell them):
//   Hf ("hf")          the Hugging Face LoftQ layout, backbone dequantized (export/hf.h);
//   Packed ("packed")  packed k-bit codes + block scales + LoRA factors in safetensors
//                      (export/packed.h, docs/FORMAT.md);
//   BnbNf4 ("bnb-nf4") the bitsandbytes 4-bit serialization transformers loads pre-quantized,
//                      with the loftq_init adapter beside it (export/bnb.h).
// With an empty out_dir nothing is written (a dry run, the GUI's preview).
#pragma once
#include <memory>

#include "loftq/exporter.h"
#include "loftq/job.h"

namespace loftq {

QuantizeResult run_quantize(const QuantizeOptions& opt, const JobCallback& on_event, const CancelToken& cancel);

// The exporter for opt.format; throws loftq::Error for a plan the format cannot hold (e.g. bnb-nf4 with a weight that is not NF4 / block 64).
std::unique_ptr<Exporter> make_exporter(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);

}  // namespace loftq
