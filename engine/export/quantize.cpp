// quantize.cpp: see quantize.h; make_exporter is the one place that maps a format to its writer.
#include "export/quantize.h"

#include <string>

#include "core/error.h"
#include "export/bnb.h"
#include "export/hf.h"
#include "export/packed.h"

namespace loftq {

std::unique_ptr<Exporter> make_exporter(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan) {
    switch (opt.format) {
        case ExportFormat::Hf: return std::make_unique<HfExport>(ck, opt, plan);
        case ExportFormat::Packed: return std::make_unique<PackedExport>(ck, opt, plan);
        case ExportFormat::BnbNf4: return std::make_unique<BnbExport>(ck, opt, plan);
    }
    throw Error(opt.out_dir, "", "unknown export format " + std::to_string(int(opt.format)));
}

QuantizeResult run_quantize(const QuantizeOptions& opt, const JobCallback& on_event, const CancelToken& cancel) {
    return run_quantize_with(opt, opt.out_dir.empty() ? ExporterFactory{} : ExporterFactory(make_exporter), on_event, cancel);
}

}  // namespace loftq
