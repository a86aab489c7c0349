// main_window_run.cpp: runs of the plan (all targets, or the selected cells) on the engine's
// job threads, their events into RunResults (which the plots and grid read), progress/ETA in the
// status bar, cancel, and the chart following the grid selection. A calibration file set in
// the Mixed precision panel goes with the run: its statistics (collected on the job's thread,
// or reused when the panel already has them) give every weight its output errors too.
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>

#include "error_chart.h"
#include "log_panel.h"
#include "studio/main_window.h"

#include "device_combo.h"
#include "plan_document.h"
#include "plan_grid_view.h"
#include "plot_style.h"
#include "run_results.h"
#include "studio/job.h"
#include "studio/mixed.h"
#include "studio/try_it.h"

namespace studio {

bool MainWindow::isRunning() const { return job_->running(); }

bool MainWindow::runAll() { return startRun({}, ExportSpec{}); }

bool MainWindow::runSelected() {
    std::vector<std::string> only;
    for (int w : doc_->weightsOfCells(grid_->selectedCells())) only.push_back(doc_->resolved().weights[size_t(w)].name);
    if (only.empty()) {
        showError(tr("Run selected"), tr("No quantized weight is selected in the grid."));
        return false;
    }
    return startRun(only, ExportSpec{});
}

void MainWindow::cancelRun() {
    if (planLoading_) {   // Cancel while a plan loads: the plan on screen stays
        dropPlanLoad(tr("cancelled"));
        statusLabel_->setText(tr("Plan load cancelled"));
        return;
    }
    if (!job_->running()) return;
    job_->cancel();
    statusLabel_->setText(tr("Cancelling…"));
    log_->append(LogPanel::Level::Info, tr("cancel requested"));
}

bool MainWindow::startRun(const std::vector<std::string>& only, const ExportSpec& out) {
    const QString& out_dir = out.dir;
    if (!doc_->hasModel() || job_->running() || openWatcher_->isRunning() || planLoading_) return false;
    if (openedExport_) {
        showError(tr("Run"), tr("This is a packed LoftQ export: its weights are already quantized. Open the original "
                                "checkpoint to run a plan, or fine-tune the export in the Fine-tune tab."));
        return false;
    }
    loftq::QuantizeOptions opt;
    opt.model = doc_->modelPath().toStdString();
    opt.out_dir = out_dir.toStdString();
    opt.plan = doc_->plan();
    opt.plan.model = opt.model;
    opt.threads = threads_;
    opt.device = device_->device();
    opt.force = out.force;
    opt.format = out.format;
    opt.double_quant = out.double_quant;
    opt.only = only;
    // The run's weights, resolved as the job will (same engine call, same subset filter).
    loftq::ResolvedPlan rp = doc_->resolved();
    if (!only.empty()) {
        std::vector<loftq::WeightPlan> keep;
        for (auto& w : rp.weights)
            if (std::find(only.begin(), only.end(), w.name) != only.end()) keep.push_back(w);
        rp.weights = std::move(keep);
    }
    exporting_ = !out_dir.isEmpty();
    exportingDir_ = out_dir;
    exportPlots_ = out.plots;
    const auto calib = mixed_->calibOptions();
    opt.calib = mixed_->cachedCalibration();
    // Run Selected merges into the results on show; Run All and exports replace them.
    if (out.launch) {
        if (!only.empty()) return false;   // Run on runs the whole plan
        exportingDir_ = QDir(out_dir).filePath("export");
        if (exportPlots_) log_->append(LogPanel::Level::Info, tr("run on %1: plots are not written with a launched export")
                                                                  .arg(QString::fromStdString(loftq::expand_template(*out.launch))));
        exportPlots_ = false;
        if (opt.calib || calib) log_->append(LogPanel::Level::Info, tr("run on: calibration stays on this machine; weight errors only"));
    }
    results_->start(rp, only.empty() ? RunResults::Mode::Replace : RunResults::Mode::Merge);
    last_result_.reset();
    if (out.launch ? !job_->startLaunched(*out.launch, opt, rp, out_dir.toStdString()) : !job_->start(std::move(opt), calib))
        return false;
    log_->append(LogPanel::Level::Info, exporting_ ? tr("export of %1 weights to %2 started").arg(rp.weights.size()).arg(out_dir)
                                                   : tr("run of %1 weights started").arg(rp.weights.size()));
    statusLabel_->setText(exporting_ ? tr("Exporting…") : tr("Running LoftQ…"));
    progress_->setValue(0);
    etaLabel_->clear();
    updateActions();
    syncChartToSelection();
    return true;
}

void MainWindow::onJobEvent(const loftq::JobEvent& e) {
    results_->apply(e);
    switch (e.kind) {
    case loftq::EventKind::JobStarted:
    case loftq::EventKind::Message:
        log_->append(LogPanel::Level::Info, QString::fromStdString(e.message));
        break;
    case loftq::EventKind::Writing:
        log_->append(LogPanel::Level::Info, QString::fromStdString(e.message));
        statusLabel_->setText(tr("Writing files…"));
        break;
    default:
        break;
    }
    if (e.kind != loftq::EventKind::Message && e.kind != loftq::EventKind::Writing) {
        progress_->setValue(int(e.fraction * 1000));
        progress_->setFormat(QString("%1/%2 weights").arg(e.weights_done).arg(e.weights_total));
        etaLabel_->setText(e.eta >= 0 ? tr("%1 elapsed, %2 left").arg(format_seconds(e.elapsed), format_seconds(e.eta)) : QString());
    }
}

void MainWindow::onJobFinished() {
    const auto r = last_result_;
    if (!r) return onJobEnded(RunResults::State::Failed, tr("the job ended without a result"));
    results_->finish(*r);
    double sum_base = 0, sum_final = 0;
    for (const auto& w : r->weights) {
        sum_base += w.baseline;
        sum_final += w.final_error;
    }
    const double n = std::max<size_t>(1, r->weights.size());
    QString summary = tr("%1 weights in %2: mean relative error %3 (QLoRA %4)")
                          .arg(r->weights.size())
                          .arg(format_seconds(r->seconds))
                          .arg(sum_final / n, 0, 'g', 5)
                          .arg(sum_base / n, 0, 'g', 5);
    if (exporting_) {
        last_export_dir_ = exportingDir_;
        tryIt_->setExportPath(last_export_dir_);   // the Try it tab offers the new export
        summary = tr("Exported to %1: ").arg(exportingDir_) + summary;
    }
    log_->append(LogPanel::Level::Info, summary);
    onJobEnded(RunResults::State::Finished, summary);
}

void MainWindow::onJobEnded(RunResults::State end, const QString& why) {
    const bool was_export = exporting_;
    const bool ok = end == RunResults::State::Finished;
    exporting_ = false;
    if (end == RunResults::State::Cancelled) {
        results_->fail(end, why);
        log_->append(LogPanel::Level::Info, was_export ? tr("export cancelled: nothing was written") : tr("run cancelled"));
        statusLabel_->setText(tr("Cancelled"));
    } else if (!ok) {
        results_->fail(end, why);
        showError(was_export ? tr("Export failed") : tr("Run failed"), why);
    } else {
        statusLabel_->setText(why);
    }
    etaLabel_->clear();
    updateActions();
    if (was_export) emit exportFinished(ok);
    emit runFinished(ok);
}

void MainWindow::syncChartToSelection() {
    QStringList names;
    for (int w : doc_->weightsOfCells(grid_->selectedCells())) names << QString::fromStdString(doc_->resolved().weights[size_t(w)].name);
    chart_->setWeights(names);
}

}  // namespace studio
