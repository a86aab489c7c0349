// main_window_open.cpp: opening models (dialog, drop, recent files, demo) in the background,
// and loading / saving plans as the engine's JSON (`*.loftq.json`). A plan is read and resolved
// on a pool thread (studio/plan_load.h) and applied here when its answer is still wanted.
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QSettings>
#include <QStandardPaths>
#include <QtConcurrent>

#include "log_panel.h"
#include "studio/main_window.h"
#include "model_overview.h"
#include "plan_document.h"
#include "run_results.h"
#include "studio/finetune.h"
#include "studio/try_it.h"
#include "studio/job.h"

namespace studio {

void MainWindow::openModel(const QString& path) {
    if (openWatcher_->isRunning() || job_->running()) {
        showError(tr("Open"), tr("Busy: wait for the current open or run to end, or cancel it."));
        emit openFinished(false);
        return;
    }
    if (!maybeSavePlan()) {
        emit openFinished(false);
        return;
    }
    dropPlanLoad(tr("another model is being opened"));
    openingPath_ = path;
    statusLabel_->setText(tr("Opening %1…").arg(path));
    log_->append(LogPanel::Level::Info, tr("opening %1").arg(path));
    openWatcher_->setFuture(QtConcurrent::run([path] { return try_open_model(path); }));
    updateActions();
}

void MainWindow::openDemo() {
    const QString cache = QStandardPaths::writableLocation(QStandardPaths::CacheLocation);
    if (openWatcher_->isRunning() || job_->running()) return;
    if (!maybeSavePlan()) return;   // the demo replaces the open model and its plan too
    dropPlanLoad(tr("another model is being opened"));
    statusLabel_->setText(tr("Preparing the demo model…"));
    const QString shipped = shipped_demo_dir();
    log_->append(LogPanel::Level::Info, tr("demo model: stories260K (llama2.c, MIT licence, Andrej Karpathy) from %1, with a story corpus in %2")
                                            .arg(shipped.isEmpty() ? tr("(not found)") : shipped, QDir(cache).filePath("stories260K")));
    openWatcher_->setFuture(QtConcurrent::run([cache] {
        try {
            return try_open_model(ensure_demo_model(cache));
        } catch (const std::exception& e) {
            OpenedModel m;
            m.path = cache;
            m.error = QString::fromStdString(e.what());
            return m;
        }
    }));
    updateActions();
}

void MainWindow::onOpened(const OpenedModel& m) {
    updateActions();
    if (!m.error.isEmpty()) {
        showError(tr("Cannot open model"), m.error);
        emit openFinished(false);
        return;
    }
    loftq::Plan plan = m.packed ? m.plan : loftq::Plan{};
    plan.model = m.path.toStdString();
    results_->clear();
    last_result_.reset();
    planPath_.clear();
    openedExport_ = m.packed;
    doc_->setModel(m.path, m.tensors, plan);
    results_->setModelLayout(doc_->layers(), doc_->columns());   // the heatmap shows the grid's rows, kept ones too
    if (m.recorded) {  // the export's own run: heatmap, curves and grid errors as recorded
        results_->start(m.recorded->plan);
        results_->finish(*m.recorded);
        last_result_ = m.recorded;
    }
    results_->setPlan(doc_->resolved());
    overview_->setFacts(m.facts);
    finetune_->setModelPath(m.path);
    tryIt_->setModelPath(m.path);
    if (m.packed) tryIt_->setExportPath(m.path);
    addRecent(m.path);
    statusLabel_->setText(m.packed ? tr("%1: packed LoftQ export, %2 quantized weights (read-only: fine-tune it in the Fine-tune tab, or loftq unpack)")
                                         .arg(m.title)
                                         .arg(doc_->resolved().weights.size())
                                   : tr("%1: %2 tensors, %3 quantization targets").arg(m.title).arg(m.tensors.size()).arg(doc_->resolved().weights.size()));
    log_->append(LogPanel::Level::Info, tr("opened %1 (%2 layers x %3 modules on the grid)").arg(m.path).arg(doc_->layers()).arg(doc_->columns().size()));
    if (!m.checksum_problem.isEmpty()) log_->append(LogPanel::Level::Warning, m.checksum_problem);
    updateTitle();
    updateActions();
    emit openFinished(true);
}

void MainWindow::openDialog() {
    QSettings s;
    QFileDialog dlg(this, tr("Open model: a folder, .safetensors or llama2.c .bin"), s.value("paths/last_open").toString());
    dlg.setFileMode(QFileDialog::ExistingFile);
    dlg.setNameFilters({tr("Checkpoints (*.safetensors *.bin *.gguf config.json)"), tr("All files (*)")});
    dlg.setOption(QFileDialog::DontUseNativeDialog, false);
    if (dlg.exec() != QDialog::Accepted || dlg.selectedFiles().isEmpty()) return;
    QString path = dlg.selectedFiles().first();
    if (QFileInfo(path).fileName() == "config.json") path = QFileInfo(path).absolutePath();  // an HF folder
    s.setValue("paths/last_open", QFileInfo(path).absolutePath());
    openModel(path);
}

void MainWindow::addRecent(const QString& path) {
    QSettings s;
    QStringList r = s.value("recent/models").toStringList();
    r.removeAll(path);
    r.prepend(path);
    while (r.size() > 10) r.removeLast();
    s.setValue("recent/models", r);
    rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
    recentMenu_->clear();
    const QStringList r = QSettings().value("recent/models").toStringList();
    for (const QString& p : r) {
        QAction* a = recentMenu_->addAction(p);
        connect(a, &QAction::triggered, this, [this, p] { openModel(p); });
        a->setEnabled(QFileInfo::exists(p));
    }
    if (!r.isEmpty()) {
        recentMenu_->addSeparator();
        connect(recentMenu_->addAction(tr("Clear")), &QAction::triggered, this, [this] {
            QSettings().remove("recent/models");
            rebuildRecentMenu();
        });
    }
    recentMenu_->setEnabled(!r.isEmpty());
}

bool MainWindow::loadPlan(const QString& path) {
    if (!doc_->hasModel()) {
        showError(tr("Load plan"), tr("Open a model first."));
        return false;
    }
    if (planLoading_ || openWatcher_->isRunning() || job_->running()) {
        showError(tr("Load plan"), tr("Busy: wait for the current open, plan load or run to end, or cancel it."));
        return false;
    }
    // Parsed and resolved on a pool thread against a copy of the tensor list (names and shapes
    // only); the answer comes back through the watcher's queued finished().
    const uint64_t ticket = ++planTicket_;
    planLoading_ = true;
    planLoadingPath_ = path;
    statusLabel_->setText(tr("Loading plan %1…").arg(QFileInfo(path).fileName()));
    log_->append(LogPanel::Level::Info, tr("loading plan %1").arg(path));
    auto* watcher = new QFutureWatcher<LoadedPlan>(this);
    connect(watcher, &QFutureWatcherBase::finished, this, [this, watcher] {
        const LoadedPlan r = watcher->result();
        watcher->deleteLater();
        onPlanLoaded(r);
    });
    watcher->setFuture(QtConcurrent::run([path, tensors = doc_->tensors(), ticket] {
        LoadedPlan r = try_load_plan(path, tensors);
        r.ticket = ticket;
        return r;
    }));
    updateActions();
    return true;
}

void MainWindow::dropPlanLoad(const QString& why) {
    if (!planLoading_) return;
    ++planTicket_;   // the answer in flight no longer matches: onPlanLoaded ignores it
    planLoading_ = false;
    log_->append(LogPanel::Level::Info, tr("plan %1 not applied: %2").arg(planLoadingPath_, why));
    planLoadingPath_.clear();
    updateActions();
    emit planLoaded(false);
}

void MainWindow::onPlanLoaded(const LoadedPlan& r) {
    if (r.ticket != planTicket_) return;   // dropped (cancelled, or the model was replaced meanwhile)
    planLoading_ = false;
    planLoadingPath_.clear();
    updateActions();
    if (!r.error.isEmpty()) {
        showError(tr("Cannot load plan"), r.error);
        emit planLoaded(false);
        return;
    }
    doc_->replacePlan(r.plan, r.resolved, tr("Load plan %1").arg(QFileInfo(r.path).fileName()));
    doc_->markSaved();
    planPath_ = r.path;
    statusLabel_->setText(tr("Loaded plan %1: %2 targets").arg(QFileInfo(r.path).fileName()).arg(r.targets));
    log_->append(LogPanel::Level::Info, tr("loaded plan %1: %2 targets").arg(r.path).arg(r.targets));
    updateTitle();
    updateActions();
    emit planLoaded(true);
}

bool MainWindow::savePlan(const QString& path) {
    try {
        loftq::Plan p = doc_->plan();
        p.model = doc_->modelPath().toStdString();
        loftq::save_plan(p, path.toStdString());
        doc_->markSaved();
        planPath_ = path;
        log_->append(LogPanel::Level::Info, tr("saved plan %1 (run it with: loftq quantize MODEL --plan %1 --out DIR)").arg(path));
        updateTitle();
        return true;
    } catch (const std::exception& e) {
        showError(tr("Cannot save plan"), QString::fromStdString(e.what()));
        return false;
    }
}

void MainWindow::loadPlanDialog() {
    QString path = QFileDialog::getOpenFileName(this, tr("Load plan"), QSettings().value("paths/plans").toString(),
                                                tr("LoftQ plans (*.loftq.json *.json)"));
    if (path.isEmpty()) return;
    QSettings().setValue("paths/plans", QFileInfo(path).absolutePath());
    loadPlan(path);
}

QString MainWindow::planSaveStart() const {
    if (!planPath_.isEmpty()) return planPath_;
    // The folder plans were last saved in, else the model's own folder when writable, else home;
    // the file named after the model.
    QString dir = QSettings().value("paths/plans").toString();
    const QFileInfo model(doc_->modelPath());
    const QString model_dir = model.isDir() ? model.absoluteFilePath() : model.absolutePath();
    if (dir.isEmpty() || !QFileInfo(dir).isDir()) dir = !doc_->modelPath().isEmpty() && QFileInfo(model_dir).isWritable() ? model_dir : QDir::homePath();
    const QString stem = doc_->modelPath().isEmpty() ? QStringLiteral("plan") : model.completeBaseName();
    return QDir(dir).filePath(stem + ".loftq.json");
}

bool MainWindow::savePlanDialog() {
    const QString start = planSaveStart();
    QString path = QFileDialog::getSaveFileName(this, tr("Save plan"), start, tr("LoftQ plans (*.loftq.json)"));
    if (path.isEmpty()) return false;
    if (!path.endsWith(".json")) path += ".loftq.json";
    QSettings().setValue("paths/plans", QFileInfo(path).absolutePath());
    return savePlan(path);
}

bool MainWindow::maybeSavePlan() {
    if (!doc_->hasModel() || !doc_->isModified() || (!interactive_ && !askUnsaved_)) return true;
    const auto r = askUnsaved_ ? QMessageBox::StandardButton(askUnsaved_())
                               : QMessageBox::question(this, tr("Unsaved plan"), tr("The plan has unsaved changes. Save them?"),
                                                       QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel);
    if (r == QMessageBox::Cancel) return false;
    if (r == QMessageBox::Save) return savePlanDialog();
    return true;
}

}  // namespace studio
