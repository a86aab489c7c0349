// main_window_export.cpp: File > Export (studio/export_dialog.h) and its background job, and
// File > Export GGUF for llama.cpp (studio/gguf_export_dialog.h, which runs its own job). The engine writes the
// HF LoftQ layout (backbone + loftq_init adapter + metrics JSON/CSV) atomically; the plots are
// rendered on the GUI thread when the job asks for them (StudioJob::setExtraFiles) and land in
// the same commit under plots/, so the folder is complete or untouched.
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>

#include "error_chart.h"
#include "studio/export_dialog.h"
#include "studio/run_on.h"
#include "studio/gguf_export_dialog.h"
#include "studio/try_it.h"
#include "error_heatmap.h"
#include "improvement_chart.h"
#include "log_panel.h"
#include "studio/main_window.h"
#include "plan_document.h"
#include "run_results.h"

namespace studio {

bool MainWindow::exportTo(const QString& dir, bool plots, bool force, loftq::ExportFormat format, bool double_quant) {
    if (dir.isEmpty()) return false;
    return startRun({}, {QDir(dir).absolutePath(), format, plots, force, double_quant, std::nullopt});
}

std::vector<std::pair<std::string, std::string>> MainWindow::renderPlots(const loftq::QuantizeResult& r) {
    std::vector<std::pair<std::string, std::string>> files;
    if (!exportPlots_) return files;
    results_->finish(r);  // the plots show the exported numbers exactly
    QTemporaryDir tmp;
    if (!tmp.isValid()) throw std::runtime_error("cannot create a temporary folder for the plots");
    const QStringList shown = chart_->weights();
    if (shown.isEmpty()) {  // nothing selected: plot every weight (the chart caps the count)
        QStringList all;
        for (int i = 0; i < results_->count(); ++i) all << results_->weight(i).name;
        chart_->setWeights(all);
    }
    struct Plot { const char* name; std::function<bool(const QString&, QString*)> save; };
    const Plot plots[] = {
        {"plots/error_vs_step.png", [this](const QString& p, QString* e) { return chart_->save(p, 1200, 800, e); }},
        {"plots/final_error_heatmap.png", [this](const QString& p, QString* e) { return heatmap_->save(p, 1200, 800, e); }},
        {"plots/improvement_per_layer.png", [this](const QString& p, QString* e) { return improvement_->save(p, 1200, 600, e); }},
    };
    for (const Plot& p : plots) {
        const QString path = tmp.filePath(QFileInfo(p.name).fileName());
        QString err;
        if (!p.save(path, &err)) throw std::runtime_error(("cannot render " + QString(p.name) + ": " + err).toStdString());
        QFile f(path);
        if (!f.open(QIODevice::ReadOnly)) throw std::runtime_error(("cannot read back " + path).toStdString());
        files.push_back({p.name, f.readAll().toStdString()});
    }
    if (shown.isEmpty()) chart_->setWeights(shown);
    return files;
}

bool MainWindow::exportVia(const loftq::RunTarget& target, const QString& run_dir, loftq::ExportFormat format, bool double_quant) {
    if (run_dir.isEmpty()) return false;
    return startRun({}, {QDir(run_dir).absolutePath(), format, false, false, double_quant, target});
}

GgufExportDialog* MainWindow::openGgufExport() {
    auto* dlg = new GgufExportDialog(tryIt_->sourceChoices(), threads_, this);
    dlg->setAttribute(Qt::WA_DeleteOnClose);
    connect(dlg, &GgufExportDialog::message, this, [this](const QString& text, bool error) {
        log_->append(error ? LogPanel::Level::Error : LogPanel::Level::Info, text);
    });
    if (doc_->hasModel()) {   // a name beside the model to start from (never the model itself)
        const QFileInfo m(doc_->modelPath());
        const QString base = m.isDir() ? m.absoluteFilePath() : m.dir().filePath(m.completeBaseName());
        dlg->setOutput(base + (m.suffix() == "gguf" ? "-export.gguf" : ".gguf"));
    }
    dlg->show();
    return dlg;
}

void MainWindow::exportDialog() {
    if (!doc_->hasModel()) return;
    ExportDialog dlg(doc_->resolved(), doc_->tensors(), this);
    if (dlg.exec() != QDialog::Accepted) return;
    if (!dlg.runOn()->local()) {  // through a launcher: the folder is the run folder
        if (exportVia(dlg.runOn()->target(), dlg.folder(), dlg.format(), dlg.doubleQuant())) dlg.runOn()->remember();
        return;
    }
    exportTo(dlg.folder(), dlg.plots(), dlg.replace(), dlg.format(), dlg.doubleQuant());
}

}  // namespace studio
