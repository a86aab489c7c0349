// export_dialog.cpp: see studio/export_dialog.h.
#include "studio/export_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>

#include "loftq/budget.h"
#include "plot_style.h"
#include "export/footprint.h"
#include "studio/run_on.h"

namespace studio {

ExportDialog::ExportDialog(const loftq::ResolvedPlan& plan, const std::vector<loftq::TensorMeta>& tensors, QWidget* parent)
    : QDialog(parent), plan_(plan), tensors_(tensors) {
    setWindowTitle(tr("Export LoftQ checkpoint"));
    QSettings s;
    auto* form = new QFormLayout(this);
    auto* info = new QLabel(tr("Writes the chosen layout (the Hugging Face LoftQ layout stores each target's "
                               "dequantized Q; the packed and bitsandbytes formats store the low-bit codes), the "
                               "<code>loftq_init</code> PEFT adapter, per-weight metrics (JSON + CSV) and, optionally, the plots as PNG. "
                               "The plan is run again (results are deterministic); the folder is written "
                               "atomically, never left half written."),
                            this);
    info->setWordWrap(true);
    form->addRow(info);
    dir_ = new QLineEdit(s.value("paths/export").toString(), this);
    dir_->setObjectName("ExportFolder");
    auto* browse = new QPushButton(tr("Browse…"), this);
    auto* row = new QHBoxLayout;
    row->addWidget(dir_, 1);
    row->addWidget(browse);
    form->addRow(tr("Output folder:"), row);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString start = dir_->text().trimmed().isEmpty() ? QDir::homePath() : dir_->text().trimmed();
        const QString d = QFileDialog::getExistingDirectory(this, tr("Output folder"), start);
        if (!d.isEmpty()) dir_->setText(d);
    });
    format_ = new QComboBox(this);
    format_->setObjectName("ExportFormat");
    for (const auto& f : loftq::kExportFormatNames) format_->addItem(formatLabel(f.value), int(f.value));
    setFormat(loftq::kExportFormatNames.find(s.value("export/format", "hf").toString().toStdString()).value_or(loftq::ExportFormat::Hf));
    form->addRow(tr("Format:"), format_);
    footprint_ = new QLabel(this);
    footprint_->setObjectName("ExportFootprint");
    footprint_->setWordWrap(true);
    footprint_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(tr("On disk:"), footprint_);
    dq_ = new QCheckBox(tr("Double-quantize the block scales (8-bit, blocks of 256)"), this);
    form->addRow(dq_);
    plots_ = new QCheckBox(tr("Plots as PNG (plots/)"), this);
    plots_->setChecked(s.value("export/plots", true).toBool());
    replace_ = new QCheckBox(tr("Replace the folder's contents (an earlier export)"), this);
    replace_->setObjectName("ExportReplace");
    form->addRow(plots_);
    form->addRow(replace_);
    runOn_ = new RunOnBox(this);
    runOn_->setObjectName("ExportRunOn");
    form->addRow(tr("Run on:"), runOn_);
    // Through a launcher the folder is the run's (new, or empty): the export lands in its export/.
    auto launched = [this] {
        const bool remote = !runOn_->local();
        plots_->setEnabled(!remote);
        replace_->setEnabled(!remote);
        plots_->setToolTip(remote ? tr("Plots are rendered here: not with a launched export") : QString());
    };
    connect(runOn_, &RunOnBox::changed, this, launched);
    launched();
    problem_ = new QLabel(this);
    problem_->setObjectName("ExportProblem");
    problem_->setWordWrap(true);
    problem_->setStyleSheet("color: #c62828;");
    problem_->setVisible(false);
    form->addRow(problem_);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Export"));
    form->addRow(buttons);
    connect(buttons, &QDialogButtonBox::accepted, this, [this] { tryAccept(); });
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    connect(format_, &QComboBox::currentIndexChanged, this, [this] { updateFootprint(); });
    connect(dir_, &QLineEdit::textChanged, problem_, &QWidget::hide);   // a stale problem goes with the edit
    connect(replace_, &QCheckBox::toggled, problem_, &QWidget::hide);
    updateFootprint();
}

QString ExportDialog::folder() const { return dir_->text().trimmed(); }
QString ExportDialog::formatLabel(loftq::ExportFormat f) {
    switch (f) {
        case loftq::ExportFormat::Hf: return tr("Hugging Face LoftQ layout (backbone dequantized, loftq_init adapter)");
        case loftq::ExportFormat::Packed: return tr("Packed low-bit safetensors (k-bit codes + block scales; docs/FORMAT.md)");
        case loftq::ExportFormat::BnbNf4: return tr("bitsandbytes NF4 (transformers loads it pre-quantized; NF4 block 64 only)");
    }
    return QString::fromLatin1(loftq::kExportFormatNames.name(f));
}

loftq::ExportFormat ExportDialog::format() const { return loftq::ExportFormat(format_->currentData().toInt()); }
bool ExportDialog::plots() const { return plots_->isChecked(); }
bool ExportDialog::replace() const { return replace_->isChecked(); }
bool ExportDialog::doubleQuant() const { return dq_->isEnabled() && dq_->isChecked(); }
void ExportDialog::setFolder(const QString& dir) { dir_->setText(dir); }
void ExportDialog::setFormat(loftq::ExportFormat f) { format_->setCurrentIndex(std::max(0, format_->findData(int(f)))); }
void ExportDialog::setReplace(bool on) { replace_->setChecked(on); }
QString ExportDialog::footprintText() const { return footprint_->text(); }
QString ExportDialog::problemText() const { return problem_->isHidden() ? QString() : problem_->text(); }

void ExportDialog::updateFootprint() {
    dq_->setEnabled(format() == loftq::ExportFormat::Packed);
    const loftq::PlanSize size = loftq::plan_size(plan_, tensors_);
    const loftq::ExportFootprint f = loftq::export_footprint(plan_, tensors_, format());
    QString text = tr("about %1: model files %2 + loftq_init %3 (LoRA factors in fp32)")
                       .arg(format_bytes_decimal(f.total()), format_bytes_decimal(f.model_bytes + f.header_bytes),
                            format_bytes_decimal(f.adapter_bytes));
    if (format() == loftq::ExportFormat::Packed) text += tr("; the packed model file holds the LoRA factors too");
    if (format() == loftq::ExportFormat::Hf) text += tr("; the HF layout stores every target dequantized at its source dtype");
    text += tr(". The plan's size (budget bar, LoRA at 16-bit): %1.").arg(format_bytes_decimal(size.total_bytes));
    footprint_->setText(text);
}

QString ExportDialog::problem() const {
    const QString dir = folder();
    if (dir.isEmpty()) return tr("Choose an output folder.");
    const QDir d(dir);
    const bool empty = !d.exists() || d.isEmpty(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden);
    if (!runOn_->local()) {
        try {
            runOn_->target();
        } catch (const std::exception& e) {
            return tr("Run on: %1").arg(QString::fromStdString(e.what()));
        }
        if (!empty)
            return tr("%1 is not empty: a launched export needs a new run folder (its export lands in export/ there).")
                .arg(QDir::toNativeSeparators(dir));
    }
    if (!empty && !replace())
        return tr("%1 is not empty. Check \"Replace the folder's contents\" to overwrite an earlier export there, or "
                  "choose another folder.")
            .arg(QDir::toNativeSeparators(dir));
    if (QFileInfo(dir).exists() && !QFileInfo(dir).isDir()) return tr("%1 is a file, not a folder.").arg(dir);
    if (format() == loftq::ExportFormat::BnbNf4)
        for (const auto& w : plan_.weights)
            if (w.s.quant != loftq::QuantKind::NF4 || w.s.block != 64)
                return tr("bitsandbytes NF4 holds only NF4 weights with block 64, but %1 is planned as %2: choose the "
                          "HF layout or packed, or change the plan.")
                    .arg(QString::fromStdString(w.name), QString::fromStdString(loftq::settings_summary(w.s)));
    return {};
}

bool ExportDialog::tryAccept() {
    const QString why = problem();
    if (!why.isEmpty()) {
        problem_->setText(why);
        problem_->setVisible(true);
        return false;
    }
    QSettings s;
    s.setValue("paths/export", folder());
    s.setValue("export/plots", plots());
    s.setValue("export/format", loftq::kExportFormatNames.name(format()));
    accept();
    return true;
}

}  // namespace studio
