// gguf_export_dialog.cpp: see gguf_export_dialog.h.
#include "studio/gguf_export_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

#include "core/units.h"
#include "studio/job_thread.h"
#include "studio/try_it_worker.h"

namespace studio {

namespace {
QString first_line(const QString& s) { return s.section('\n', 0, 0); }
}  // namespace

GgufExportDialog::GgufExportDialog(QList<TryItPanel::SourceChoice> sources, int threads, QWidget* parent)
    : QDialog(parent), sources_(std::move(sources)), threads_(threads) {
    setWindowTitle(tr("Export GGUF for llama.cpp"));
    setObjectName("GgufExportDialog");
    source_ = new QComboBox(this);
    source_->setObjectName("GgufSource");
    for (const auto& s : sources_) source_->addItem(s.label);
    source_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    source_->setMinimumContentsLength(30);
    auto* browseSrc = new QPushButton(tr("Folder…"), this);
    browseSrc->setToolTip(tr("A run, adapter, export or model folder"));
    connect(browseSrc, &QPushButton::clicked, this, &GgufExportDialog::browseSource);
    auto* srcRow = new QHBoxLayout;
    srcRow->addWidget(source_, 1);
    srcRow->addWidget(browseSrc);

    out_ = new QLineEdit(this);
    out_->setObjectName("GgufOutput");
    out_->setPlaceholderText(tr("model.gguf"));
    auto* browseOut = new QPushButton(tr("Browse…"), this);
    connect(browseOut, &QPushButton::clicked, this, &GgufExportDialog::browseOutput);
    auto* outRow = new QHBoxLayout;
    outRow->addWidget(out_, 1);
    outRow->addWidget(browseOut);

    type_ = new QComboBox(this);
    type_->setObjectName("GgufType");
    type_->addItem(tr("F16 (16 bits per weight)"), int(loftq::GgufWeightType::F16));
    type_->addItem(tr("Q8_0 (8.5 bits: llama.cpp's 8-bit blocks of 32)"), int(loftq::GgufWeightType::Q8_0));
    type_->addItem(tr("F32 (exact)"), int(loftq::GgufWeightType::F32));
    backbone_ = new QCheckBox(tr("Backbone only (leave the LoRA out instead of merging it)"), this);
    replace_ = new QCheckBox(tr("Replace the file if it exists"), this);

    auto* form = new QFormLayout;
    form->addRow(tr("Model"), srcRow);
    form->addRow(tr("File"), outRow);
    form->addRow(tr("Matrices"), type_);
    form->addRow(QString(), backbone_);
    form->addRow(QString(), replace_);

    status_ = new QLabel(tr("Every LoRA is merged into its weight (W + scale B A): the file runs in llama.cpp as our "
                            "model runs here."),
                         this);
    status_->setObjectName("GgufStatus");
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    auto* buttons = new QDialogButtonBox(this);
    export_ = buttons->addButton(tr("Export"), QDialogButtonBox::AcceptRole);
    cancel_ = buttons->addButton(tr("Cancel export"), QDialogButtonBox::ActionRole);
    auto* close = buttons->addButton(QDialogButtonBox::Close);
    connect(export_, &QPushButton::clicked, this, [this] { startExport(); });
    connect(cancel_, &QPushButton::clicked, this, &GgufExportDialog::cancel);
    connect(close, &QPushButton::clicked, this, &QDialog::reject);

    auto* lay = new QVBoxLayout(this);
    lay->addLayout(form);
    lay->addWidget(status_);
    lay->addWidget(buttons);

    job_ = new JobThread(this);
    connect(job_, &JobThread::succeeded, this, [this] { onEnded(false, QString()); });
    connect(job_, &JobThread::cancelled, this, [this] { onEnded(true, QString()); });
    connect(job_, &JobThread::failed, this, [this](const QString& m) { onEnded(false, m); });
    connect(this, &QDialog::rejected, this, &GgufExportDialog::cancel);   // closing stops the job
    updateEnabled();
}

GgufExportDialog::~GgufExportDialog() {
    delete job_;   // cancels and joins before the members go
}

void GgufExportDialog::setSourceIndex(int i) { source_->setCurrentIndex(i); }
int GgufExportDialog::sourceCount() const { return source_->count(); }
void GgufExportDialog::setOutput(const QString& path) { out_->setText(path); }
void GgufExportDialog::setType(loftq::GgufWeightType t) { type_->setCurrentIndex(type_->findData(int(t))); }
void GgufExportDialog::setBackboneOnly(bool on) { backbone_->setChecked(on); }
void GgufExportDialog::setReplace(bool on) { replace_->setChecked(on); }
bool GgufExportDialog::running() const { return job_->running(); }
QString GgufExportDialog::statusText() const { return status_->text(); }

loftq::GgufExportOptions GgufExportDialog::options() const {
    loftq::GgufExportOptions o;
    const int i = source_->currentIndex();
    if (i >= 0 && i < sources_.size()) o.source = generator_source(sources_[i].source, threads_);
    QString out = out_->text().trimmed();
    if (!out.isEmpty() && !out.endsWith(".gguf", Qt::CaseInsensitive)) out += ".gguf";
    o.out = out.toStdString();
    o.type = loftq::GgufWeightType(type_->currentData().toInt());
    o.backbone_only = backbone_->isChecked();
    return o;
}

bool GgufExportDialog::startExport() {
    if (job_->running()) return false;
    loftq::GgufExportOptions o;
    try {
        o = options();   // a stopped run without its adapter is refused here, in one sentence
    } catch (const std::exception& e) {
        status_->setText(tr("Error: %1").arg(first_line(QString::fromStdString(e.what()))));
        return false;
    }
    if (o.source.model.empty() && o.source.adapter.empty()) {
        status_->setText(tr("Choose a model: none is open, and no folder was picked."));
        return false;
    }
    if (o.out.empty()) {
        status_->setText(tr("Choose the file to write."));
        return false;
    }
    const QString out = QString::fromStdString(o.out);
    if (QFileInfo::exists(out) && !replace_->isChecked()) {
        status_->setText(tr("%1 exists: check \"Replace the file if it exists\" or choose another name.").arg(out));
        return false;
    }
    target_ = out;
    result_ = {};
    status_->setText(tr("Loading the model…"));
    JobThread* job = job_;
    auto* result = &result_;   // read only after the job ended (the end arrives after every post)
    QLabel* status = status_;
    job_->start([o, job, result, status](const loftq::CancelToken& token) {
        auto say = [job, status](const std::string& line) {
            job->post([status, l = QString::fromStdString(line)] { status->setText(first_line(l)); });
        };
        *result = loftq::export_gguf(o, say, &token);
    });
    updateEnabled();
    return true;
}

void GgufExportDialog::cancel() {
    if (job_->running()) job_->cancel();
}

void GgufExportDialog::onEnded(bool cancelled, const QString& error) {
    bool ok = false;
    if (cancelled) {
        status_->setText(tr("Cancelled: nothing was written."));
    } else if (!error.isEmpty()) {
        status_->setText(tr("Error: %1").arg(first_line(error)));
        emit message(tr("GGUF export failed: %1").arg(first_line(error)), true);
    } else {
        ok = true;
        const loftq::GgufExportResult& r = result_;
        const QString text = tr("Wrote %1: %2, %3 tensors%4, %5 LoRA merged.")
                                 .arg(QString::fromStdString(r.path), QString::fromStdString(loftq::human_bytes(double(r.bytes))))
                                 .arg(r.tensors)
                                 .arg(r.f16_fallbacks ? tr(" (%1 kept F16: rows not a multiple of 32)").arg(r.f16_fallbacks) : QString())
                                 .arg(r.merged_sites);
        status_->setText(text);
        emit message(text, false);
    }
    updateEnabled();
    emit finished(ok, ok ? target_ : QString());
}

void GgufExportDialog::updateEnabled() {
    const bool busy = job_->running();
    export_->setEnabled(!busy);
    cancel_->setEnabled(busy);
    for (QWidget* w : std::initializer_list<QWidget*>{source_, out_, type_, backbone_, replace_}) w->setEnabled(!busy);
}

void GgufExportDialog::browseOutput() {
    const QString f = QFileDialog::getSaveFileName(this, tr("GGUF file"), out_->text(), tr("GGUF (*.gguf)"));
    if (!f.isEmpty()) out_->setText(f);
}

void GgufExportDialog::browseSource() {
    const QString d = QFileDialog::getExistingDirectory(this, tr("A run, adapter, export or model folder"));
    if (d.isEmpty()) return;
    sources_.push_back({tr("Folder: %1").arg(QFileInfo(d).fileName()), TryItSource{TryItSourceKind::Folder, d.toStdString()}});
    source_->addItem(sources_.back().label);
    source_->setCurrentIndex(source_->count() - 1);
}

}  // namespace studio
