// hf.cpp: see hf.h.
#include "export/hf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "core/big_alloc.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "io/peft_adapter.h"
#include "io/sharded_writer.h"
#include "export/common.h"

namespace fs = std::filesystem;

namespace loftq {

struct HfExport::Impl : ExportState {
    std::unique_ptr<ShardedWriter> model, adapter;
    AdapterPlan ap;                 // per weight: exported rank, lora_alpha, Conv1D
    Impl(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ExportState(c, o, p), ap(c, o, p) {}
};

HfExport::HfExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)
    : p_(std::make_unique<Impl>(ck, opt, plan)) {
    const std::string& dir = p_->staged.dir();  // the staging folder beside the output
    std::vector<OutTensor> layout;
    for (const auto& t : ck.tensors()) layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes});
    p_->model = std::make_unique<ShardedWriter>(dir, "model", layout, opt.max_shard_bytes, std::map<std::string, std::string>{{"format", "pt"}});
    p_->adapter = open_adapter_writer(dir, p_->ap.layout);
}

HfExport::~HfExport() = default;

void HfExport::write_copy(const TensorEntry& t) { copy_tensor(p_->ck, t, *p_->model); }

void HfExport::write_target(size_t wi, const Decomposition& d) {
    const WeightPlan& w = p_->plan.weights[wi];
    const TensorEntry& t = p_->ck.tensors()[size_t(w.tensor)];
    {
        BigVector<uint8_t> bytes(t.nbytes);  // written in full by from_f32: no zero fill (core/big_alloc.h)
        from_f32(t.dtype, d.Q.data(), bytes.data(), d.Q.size());
        p_->model->write(t.name, bytes.data(), bytes.size());
    }
    if (p_->ap.ranks[wi] == 0) return;
    PeftFactors f = peft_factors(p_->ap, p_->opt, w, wi, d);
    std::string mp = module_path(w.name);
    p_->adapter->write(peft_lora_key(mp, 'A'), f.A.data(), f.A.size() * 4);
    p_->adapter->write(peft_lora_key(mp, 'B'), f.B.data(), f.B.size() * 4);
}

std::vector<std::string> HfExport::commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) {
    Impl& p = *p_;
    p.model->finish();
    p.adapter->finish();
    p.model->commit(p.staged);
    p.adapter->commit(p.staged);
    stage_export_files(p.staged, p.ck, p.opt, p.plan, p.ap, p.out, result, manifest);
    return finish_export(p.staged);
}

}  // namespace loftq
