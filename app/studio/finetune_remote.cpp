// finetune_remote.cpp: the Fine-tune tab's runs through "Run on" (run_on.h, dist/launcher.h):
// the form's options become a `loftq finetune` command line (remote_args.h) started on the target
// in a run folder, whose events stream back on the job thread into the same onEvent as an
// in-process run's (curves, table, status), and whose files are fetched into the local run folder
// at the end (OUT = RUN/finetune). Stop asks the target's run to cancel and waits for its exit
// line; a lost connection fails the run with the way back (Attach…), the run going on there.
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QTemporaryDir>

#include "core/error.h"
#include "loftq/plan.h"
#include "studio/finetune.h"
#include "studio/job_thread.h"
#include "studio/remote_args.h"
#include "studio/run_on.h"
#include "training_curves.h"

namespace studio {

namespace {
constexpr const char* kOutInRun = "finetune";   // the job's --out, relative to its run folder
constexpr const char* kPlanFile = "plan.loftq.json";   // a plan start's plan, sent with the run
}

bool FinetunePanel::startRemote(loftq::TrainOptions o, const QString& name) {
    loftq::RunTarget target;
    std::vector<std::string> args;
    const QString runDir = QString::fromStdString(o.out_dir);   // the local run folder
    std::shared_ptr<const loftq::Plan> plan = o.load.plan;
    try {
        target = runOn_->target();
        // A plan start: the plan goes with the run (RemoteRun's send) and is named relatively.
        args = finetune_cli_args(o, kOutInRun, plan ? kPlanFile : "");
    } catch (const std::exception& e) {
        removeRunAt(rowOfRun(currentRun_));
        status_->setText(tr("Run on: %1").arg(QString::fromStdString(e.what())));
        emit message(status_->text(), true);
        return false;
    }
    lastOut_ = QDir(runDir).filePath(kOutInRun);
    pending_ = std::make_shared<loftq::TrainResult>();
    auto result = pending_;
    status_->setText(tr("Starting on %1…").arg(QString::fromStdString(loftq::expand_template(target))));
    emit message(tr("fine-tune \"%1\" launched: %2 (run folder %3)")
                     .arg(name, QString::fromStdString(loftq::expand_template(target)), runDir),
                 false);
    runOn_->remember();
    job_->start([this, runDir, target, args, result, plan](const loftq::CancelToken& token) {
        QTemporaryDir tmp;   // the plan file to send, written here on the job thread
        std::vector<std::string> send;
        if (plan) {
            if (!tmp.isValid()) throw loftq::Error("cannot create a temporary folder for the plan");
            send.push_back(QDir(tmp.path()).filePath(kPlanFile).toStdString());
            loftq::save_plan(*plan, send.back());
        }
        followRemote(runDir, false, target, args, send, token, result);
    });
    updateEnabled();
    return true;
}

bool FinetunePanel::attachRun(const QString& runDir) {
    if (job_->running()) return false;
    if (!QFileInfo::exists(QDir(runDir).filePath("launch.json"))) {
        emit message(tr("%1 is not a launched run's folder (no launch.json)").arg(runDir), true);
        return false;
    }
    currentRun_ = curves_->addRun(QFileInfo(runDir).fileName());
    addRunRow(currentRun_, curves_->runName(currentRun_));
    lastOut_ = QDir(runDir).filePath(kOutInRun);
    pending_ = std::make_shared<loftq::TrainResult>();
    auto result = pending_;
    progress_->setValue(0);
    status_->setText(tr("Attaching to %1…").arg(runDir));
    job_->start([this, runDir, result](const loftq::CancelToken& token) {
        followRemote(runDir, true, {}, {}, {}, token, result);
    });
    updateEnabled();
    return true;
}

void FinetunePanel::followRemote(const QString& runDir, bool attach, const loftq::RunTarget& target,
                                 const std::vector<std::string>& args, const std::vector<std::string>& send,
                                 const loftq::CancelToken& token, const std::shared_ptr<loftq::TrainResult>& result) {
    loftq::RemoteRun run = attach ? loftq::RemoteRun::attach(runDir.toStdString())
                                  : loftq::RemoteRun::start(target, args, runDir.toStdString(), send);
    const QString where = QString::fromStdString(run.over_ssh() ? run.where() : loftq::expand_template(run.record().target));
    job_->post([this, where] { emit message(tr("following the run on %1").arg(where), false); });
    // The result, from the events (the CLI's own summary stays on the target, in output.log).
    bool first_eval = true;
    auto on_event = [&](const loftq::ParsedEvent& p) {
        if (!p.train) return;
        const loftq::TrainEvent e = *p.train;
        auto& r = *result;
        switch (e.kind) {
        case loftq::TrainEventKind::Step:
            r.steps_done = e.step;
            r.final_train_loss = e.train_loss;
            r.tokens_per_s = e.tokens_per_s;
            break;
        case loftq::TrainEventKind::Eval:
            if (e.step < 0) {
                r.original_eval_loss = e.eval_loss;
                break;
            }
            if (first_eval) r.first_eval_loss = e.eval_loss, first_eval = false;
            r.final_eval_loss = e.eval_loss;
            break;
        case loftq::TrainEventKind::Sample:
            r.sample = e.text;
            break;
        case loftq::TrainEventKind::Done:
            r.seconds = e.elapsed;
            r.device = where.toStdString();
            break;
        default:
            break;
        }
        job_->post([this, e] { onEvent(e); });
    };
    run.follow_to_end(on_event, token);   // Stop: the run there cancels (a checkpoint stays, fetched)
    result->files = {QDir(runDir).filePath(kOutInRun).toStdString()};
}

}  // namespace studio
