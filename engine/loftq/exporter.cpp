// exporter.cpp: make_exporter (exporter.h), the one place that maps a format name to a writer.
#include "loftq/exporter.h"

#include "core/error.h"
#include "loftq/export_bnb.h"
#include "loftq/export_hf.h"
#include "loftq/export_packed.h"
#include "loftq/job.h"

namespace loftq {

std::unique_ptr<Exporter> make_exporter(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan) {
    if (opt.format == "hf" || opt.format.empty()) return std::make_unique<HfExport>(ck, opt, plan);
    if (opt.format == "packed") return std::make_unique<PackedExport>(ck, opt, plan);
    if (opt.format == "bnb-nf4") return std::make_unique<BnbExport>(ck, opt, plan);
    throw Error(opt.out_dir, "", "unknown export format '" + opt.format + "' (expected hf, packed or bnb-nf4)");
}

}  // namespace loftq
