// studio_job.cpp: see studio_job.h.
#include "studio_job.h"

namespace studio {

StudioJob::StudioJob(QObject* parent) : JobThread(parent) { qRegisterMetaType<loftq::JobEvent>(); }

bool StudioJob::start(loftq::QuantizeOptions opt) {
    if (running()) return false;
    const bool with_extra = extra_ && !opt.out_dir.empty();
    return JobThread::start([this, opt = std::move(opt), with_extra](const loftq::CancelToken& token) mutable {
        if (with_extra)
            opt.extra_files = [this, &token](const loftq::QuantizeResult& r) {
                auto copy = std::make_shared<const loftq::QuantizeResult>(r);   // outlives a cancelled wait
                return ask<ExtraFiles>([this, copy] { return extra_(*copy); }, token);
            };
        auto result = std::make_shared<const loftq::QuantizeResult>(loftq::run_quantize(
            opt, [this](const loftq::JobEvent& e) { post([this, e] { emit event(e); }); }, token));
        post([this, result] { emit finished(result); });
    });
}

}  // namespace studio
