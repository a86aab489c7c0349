// main_window_export.cpp: the export dialog and its background job. The engine writes the
// HF LoftQ layout (backbone + loftq_init adapter + metrics JSON/CSV) atomically; the plots are
// rendered on the GUI thread when the job asks for them (StudioJob::setExtraFiles) and land in
// the same commit under plots/, so the folder is complete or untouched.
#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QTemporaryDir>

#include "error_chart.h"
#include "error_heatmap.h"
#include "improvement_chart.h"
#include "log_panel.h"
#include "main_window.h"
#include "plan_document.h"
#include "run_results.h"

namespace studio {

bool MainWindow::exportTo(const QString& dir, bool plots, bool force, const QString& format, bool double_quant) {
    if (dir.isEmpty()) return false;
    return startRun({}, {QDir(dir).absolutePath(), format, plots, force, double_quant});
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

void MainWindow::exportDialog() {
    if (!doc_->hasModel()) return;
    QSettings s;
    QDialog dlg(this);
    dlg.setWindowTitle(tr("Export LoftQ checkpoint"));
    auto* form = new QFormLayout(&dlg);
    auto* info = new QLabel(tr("Writes the chosen layout (the Hugging Face LoftQ layout stores each target's "
                               "dequantized Q; the packed and bitsandbytes formats store the low-bit codes), the "
                               "<code>loftq_init</code> PEFT adapter, per-weight metrics (JSON + CSV) and, optionally, the plots as PNG. "
                               "The plan is run again (results are deterministic); the folder is written "
                               "atomically, never left half written."),
                            &dlg);
    info->setWordWrap(true);
    form->addRow(info);
    auto* dirEdit = new QLineEdit(s.value("paths/export").toString(), &dlg);
    auto* browse = new QPushButton(tr("Browse…"), &dlg);
    auto* row = new QHBoxLayout;
    row->addWidget(dirEdit, 1);
    row->addWidget(browse);
    form->addRow(tr("Output folder:"), row);
    connect(browse, &QPushButton::clicked, &dlg, [&] {
        QString d = QFileDialog::getExistingDirectory(&dlg, tr("Output folder"), dirEdit->text());
        if (!d.isEmpty()) dirEdit->setText(d);
    });
    auto* format = new QComboBox(&dlg);
    format->addItem(tr("Hugging Face LoftQ layout (backbone dequantized, loftq_init adapter)"), "hf");
    format->addItem(tr("Packed low-bit safetensors (k-bit codes + block scales; docs/FORMAT.md)"), "packed");
    format->addItem(tr("bitsandbytes NF4 (transformers loads it pre-quantized; NF4 block 64 only)"), "bnb-nf4");
    format->setCurrentIndex(std::max(0, format->findData(s.value("export/format", "hf").toString())));
    form->addRow(tr("Format:"), format);
    auto* dq = new QCheckBox(tr("Double-quantize the block scales (8-bit, blocks of 256)"), &dlg);
    dq->setEnabled(format->currentData().toString() == "packed");
    connect(format, &QComboBox::currentIndexChanged, &dlg, [format, dq] { dq->setEnabled(format->currentData().toString() == "packed"); });
    form->addRow(dq);
    auto* plots = new QCheckBox(tr("Plots as PNG (plots/)"), &dlg);
    plots->setChecked(s.value("export/plots", true).toBool());
    auto* force = new QCheckBox(tr("Allow a non-empty folder (replaces an earlier export)"), &dlg);
    form->addRow(plots);
    form->addRow(force);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &dlg);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Export"));
    form->addRow(buttons);
    connect(buttons, &QDialogButtonBox::accepted, &dlg, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, &dlg, &QDialog::reject);
    if (dlg.exec() != QDialog::Accepted || dirEdit->text().trimmed().isEmpty()) return;
    s.setValue("paths/export", dirEdit->text().trimmed());
    s.setValue("export/plots", plots->isChecked());
    s.setValue("export/format", format->currentData().toString());
    exportTo(dirEdit->text().trimmed(), plots->isChecked(), force->isChecked(), format->currentData().toString(),
             dq->isEnabled() && dq->isChecked());
}

}  // namespace studio
