// job.cpp: see studio/job.h.
#include "studio/job.h"

#include "export/quantize.h"

namespace studio {

StudioJob::StudioJob(QObject* parent) : JobThread(parent) { qRegisterMetaType<loftq::JobEvent>(); }

bool StudioJob::start(loftq::QuantizeOptions opt, std::optional<loftq::CalibOptions> calib) {
    if (running()) return false;
    const bool with_extra = extra_ && !opt.out_dir.empty();
    return JobThread::start([this, opt = std::move(opt), calib = std::move(calib), with_extra](const loftq::CancelToken& token) mutable {
        auto message = [this](const std::string& text) {
            loftq::JobEvent e;
            e.kind = loftq::EventKind::Message;
            e.message = text;
            post([this, e] { emit event(e); });
        };
        if (calib && !opt.calib) {
            message("calibration: collecting input statistics on " + std::to_string(calib->tokens) + " tokens of " + calib->data);
            try {
                auto stats = std::make_shared<const loftq::CalibStats>(loftq::collect_calibration(*calib, {}, token));
                message("calibration: " + std::to_string(stats->tokens) + " tokens; output errors beside weight errors");
                for (const auto& n : stats->notes) message("calibration: " + n);
                opt.calib = stats;
                post([this, stats, o = *calib] { emit calibrated(stats, o); });
            } catch (const loftq::CalibrationUnsupported& e) {
                message(std::string("calibration skipped: ") + e.what() + "; weight errors only");
            }
        }
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
