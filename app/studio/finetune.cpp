// finetune.cpp: see studio/finetune.h.
#include "studio/finetune.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QShortcut>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardItemModel>
#include <QStandardPaths>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <map>

#include "device_combo.h"
#include "studio/run_on.h"
#include "device/compute_device.h"
#include "model/llama.h"
#include "quant/quantizer.h"
#include "studio/job_thread.h"
#include "training_curves.h"

namespace studio {

namespace {
// The init combo's data for "LoftQ of the current plan" (InitKind::Loftq with LoadOptions::plan).
constexpr int kPlanStart = 100;

QSpinBox* spin(QWidget* parent, int lo, int hi, int value) {
    auto* s = new QSpinBox(parent);
    s->setRange(lo, hi);
    s->setValue(value);
    return s;
}
QLineEdit* file_row(QWidget* parent, QFormLayout* form, const QString& label, bool folder) {
    auto* edit = new QLineEdit(parent);
    auto* browse = new QPushButton(QObject::tr("…"), parent);
    browse->setMaximumWidth(browse->fontMetrics().horizontalAdvance("…") * 4);
    auto* row = new QHBoxLayout;
    row->addWidget(edit, 1);
    row->addWidget(browse);
    form->addRow(label, row);
    QObject::connect(browse, &QPushButton::clicked, parent, [parent, edit, folder] {
        QString p = folder ? QFileDialog::getExistingDirectory(parent, QString(), edit->text())
                           : QFileDialog::getOpenFileName(parent, QString(), edit->text());
        if (!p.isEmpty()) edit->setText(p);
    });
    return edit;
}
}  // namespace

FinetunePanel::FinetunePanel(QWidget* parent) : QWidget(parent) {
    qRegisterMetaType<loftq::TrainEvent>();
    job_ = new JobThread(this);
    connect(job_, &JobThread::succeeded, this, [this] { onEnded(true, QString()); });
    // The engine has said in a message what stayed (the checkpoint for a resume, or nothing).
    connect(job_, &JobThread::cancelled, this, [this] { onEnded(false, tr("stopped")); });
    connect(job_, &JobThread::failed, this, [this](const QString& m) { onEnded(false, m); });

    auto* formBox = new QGroupBox(tr("Run"), this);
    auto* form = new QFormLayout(formBox);
    model_ = file_row(this, form, tr("Model:"), true);
    model_->setPlaceholderText(tr("model folder, .safetensors, llama2.c .bin or LoftQ export"));
    data_ = file_row(this, form, tr("Data:"), false);
    data_->setPlaceholderText(tr("text, or JSONL with text / question+answer / instruction+output"));
    evalData_ = file_row(this, form, tr("Held-out data:"), false);
    evalData_->setPlaceholderText(tr("optional; else 5% of the data"));
    init_ = new QComboBox(this);
    init_->setObjectName("FinetuneInit");
    init_->addItem(tr("LoftQ (decompose now)"), int(loftq::InitKind::Loftq));
    init_->addItem(tr("LoftQ of the current plan (its per-weight settings)"), kPlanStart);
    init_->addItem(tr("QLoRA (A random, B = 0)"), int(loftq::InitKind::Qlora));
    init_->addItem(tr("16-bit LoRA"), int(loftq::InitKind::Lora16));
    init_->addItem(tr("LoftQ export (as stored)"), int(loftq::InitKind::Export));
    form->addRow(tr("Initialisation:"), init_);
    quant_ = new QComboBox(this);
    for (const char* q : {"nf4", "nf3", "nf2", "int2", "int3", "int4", "int8"}) quant_->addItem(q);
    quant_->setObjectName("FinetuneQuant");
    rank_ = spin(this, 1, 1024, 8);
    rank_->setObjectName("FinetuneRank");
    iters_ = spin(this, 0, 100, 5);
    iters_->setObjectName("FinetuneIters");
    auto* qrow = new QHBoxLayout;
    qrow->addWidget(quant_);
    qrow->addWidget(new QLabel(tr("rank"), this));
    qrow->addWidget(rank_);
    qrow->addWidget(new QLabel(tr("T"), this));
    qrow->addWidget(iters_);
    form->addRow(tr("Quantizer:"), qrow);
    // The export start only for an export; fields the chosen start ignores are disabled.
    connect(model_, &QLineEdit::textChanged, this, [this] {
        // Whether the model is an export is read here, once per path (it opens the checkpoint's
        // header), not on every plan edit that refreshes the choices.
        const QString path = model_->text().trimmed();
        modelIsExport_ = !path.isEmpty() && loftq::is_loftq_export(path.toStdString());
        updateInitChoices();
    });
    connect(init_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { updateInitChoices(); });
    steps_ = spin(this, 1, 1000000, 100);
    batch_ = spin(this, 1, 4096, 4);
    seq_ = spin(this, 8, 32768, 128);
    accum_ = spin(this, 1, 1024, 1);
    auto* srow = new QHBoxLayout;
    for (auto [label, w] : {std::pair{tr("steps"), steps_}, {tr("batch"), batch_}, {tr("seq"), seq_}, {tr("accum"), accum_}}) {
        srow->addWidget(new QLabel(label, this));
        srow->addWidget(w);
    }
    form->addRow(tr("Schedule:"), srow);
    lr_ = new QDoubleSpinBox(this);
    lr_->setDecimals(6);
    lr_->setRange(1e-6, 1.0);
    lr_->setSingleStep(1e-4);
    lr_->setValue(2e-3);
    evalEvery_ = spin(this, 1, 1000000, 25);
    seed_ = spin(this, 0, 1 << 30, 0);
    auto* lrow = new QHBoxLayout;
    lrow->addWidget(lr_);
    lrow->addWidget(new QLabel(tr("eval every"), this));
    lrow->addWidget(evalEvery_);
    lrow->addWidget(new QLabel(tr("seed"), this));
    lrow->addWidget(seed_);
    form->addRow(tr("Learning rate:"), lrow);
    device_ = new DeviceCombo(this);  // Auto by default; CUDA enabled with the GPU's name, or disabled with the reason
    device_->setToolTip(tr("Where fine-tuning runs: Auto takes the GPU when one is usable"));
    threads_ = spin(this, 0, 1024, 0);
    threads_->setSpecialValueText(tr("all cores"));
    auto* drow = new QHBoxLayout;
    drow->addWidget(device_);
    drow->addWidget(new QLabel(tr("threads"), this));
    drow->addWidget(threads_);
    form->addRow(tr("Device:"), drow);
    runOn_ = new RunOnBox(this);
    runOn_->setObjectName("FinetuneRunOn");
    form->addRow(tr("Run on:"), runOn_);
    out_ = file_row(this, form, tr("Output folder:"), true);
    out_->setPlaceholderText(tr("empty: a new folder per run under the app's data folder"));

    startButton_ = new QPushButton(tr("Start"), this);
    stopButton_ = new QPushButton(tr("Stop"), this);
    progress_ = new QProgressBar(this);
    progress_->setRange(0, 1000);
    status_ = new QLabel(this);
    status_->setWordWrap(true);
    auto* openRunButton = new QPushButton(tr("Open Run…"), this);
    openRunButton->setToolTip(tr("Overlay an earlier run's curves from its folder (metrics.jsonl), e.g. one made by loftq finetune"));
    connect(openRunButton, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("A fine-tuning run's folder"), lastOut_);
        if (!dir.isEmpty()) openRun(dir);
    });
    measureOriginal_ = new QCheckBox(tr("Reference: the original model's held-out loss (measured once per data)"), this);
    measureOriginal_->setObjectName("FinetuneMeasureOriginal");
    measureOriginal_->setChecked(true);
    measureOriginal_->setToolTip(tr("Before the first run on a model and held-out data, evaluate the unquantized model on the "
                                    "same examples: the dashed line every quantized start should approach"));
    form->addRow(measureOriginal_);
    auto* attachButton = new QPushButton(tr("Attach…"), this);
    attachButton->setObjectName("FinetuneAttach");
    attachButton->setToolTip(tr("Follow a run started with Run on (a lost connection, or an earlier session): choose its run "
                                "folder (launch.json)"));
    connect(attachButton, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("A launched run's folder (launch.json)"), lastOut_);
        if (!dir.isEmpty()) attachRun(dir);
    });
    auto* brow = new QHBoxLayout;
    brow->addWidget(startButton_);
    brow->addWidget(stopButton_);
    brow->addWidget(openRunButton);
    brow->addWidget(attachButton);
    brow->addWidget(progress_, 1);
    form->addRow(brow);
    form->addRow(status_);
    connect(startButton_, &QPushButton::clicked, this, &FinetunePanel::start);
    connect(stopButton_, &QPushButton::clicked, this, &FinetunePanel::stop);

    curves_ = new TrainingCurves(this);
    curves_->setObjectName("TrainingCurves");
    runs_ = new QTableWidget(0, 5, this);
    runs_->setHorizontalHeaderLabels({tr("Run"), tr("Steps"), tr("Loss start"), tr("Loss end"), tr("Tokens/s")});
    runs_->horizontalHeaderItem(2)->setToolTip(tr("Held-out loss before fine-tuning (nats per token)"));
    runs_->horizontalHeaderItem(3)->setToolTip(tr("Held-out loss at the last evaluation"));
    runs_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    runs_->horizontalHeader()->setStretchLastSection(true);
    runs_->setObjectName("FinetuneRuns");
    runs_->verticalHeader()->hide();
    runs_->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed | QAbstractItemView::SelectedClicked);
    runs_->setSelectionBehavior(QAbstractItemView::SelectRows);
    runs_->setSelectionMode(QAbstractItemView::SingleSelection);
    runs_->setContextMenuPolicy(Qt::CustomContextMenu);
    runs_->horizontalHeaderItem(0)->setToolTip(tr("Double-click to rename; Delete removes the run from the chart"));
    connect(runs_, &QTableWidget::currentCellChanged, this, [this](int row) {
        const int run = runAtRow(row);
        curves_->setHighlight(run);
        if (run >= 0) sample_->setPlainText(samples_.value(run));
    });
    connect(runs_, &QTableWidget::itemChanged, this, [this](QTableWidgetItem* it) {
        if (it->column() != 0) return;
        const int run = it->data(Qt::UserRole).toInt();
        curves_->renameRun(run, it->text());
        if (it->text() != curves_->runName(run)) {   // made unique, or an empty name refused
            QSignalBlocker block(runs_);
            it->setText(curves_->runName(run));
        }
    });
    connect(runs_, &QWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
        const int row = runs_->rowAt(pos.y());
        if (row < 0) return;
        QMenu menu(this);
        menu.addAction(tr("Rename"), this, [this, row] { runs_->editItem(runs_->item(row, 0)); });
        menu.addAction(tr("Remove from the chart"), this, [this, row] { removeRunAt(row); });
        menu.exec(runs_->viewport()->mapToGlobal(pos));
    });
    auto* del = new QShortcut(QKeySequence::Delete, runs_, nullptr, nullptr, Qt::WidgetShortcut);
    connect(del, &QShortcut::activated, this, [this] { removeRunAt(runs_->currentRow()); });
    sample_ = new QPlainTextEdit(this);
    sample_->setReadOnly(true);
    sample_->setPlaceholderText(tr("The greedy sample of the selected run (or the last one) appears here."));

    // Left: the form, then the runs and the last sample; right: the curves, which get the room.
    auto* left = leftSplit_ = new QSplitter(Qt::Vertical, this);
    // The form scrolls in a small window rather than setting the window's minimum size.
    auto* formScroll = new QScrollArea(this);
    formScroll->setObjectName("FinetuneFormScroll");
    formScroll->setWidget(formBox);
    formScroll->setWidgetResizable(true);
    formScroll->setFrameShape(QFrame::NoFrame);
    left->addWidget(formScroll);
    left->addWidget(runs_);
    left->addWidget(sample_);
    left->setStretchFactor(0, 0);
    left->setStretchFactor(1, 1);
    left->setStretchFactor(2, 1);
    sample_->setLineWrapMode(QPlainTextEdit::WidgetWidth);
    auto* split = split_ = new QSplitter(Qt::Horizontal, this);
    split->addWidget(left);
    split->addWidget(curves_);
    split->setStretchFactor(0, 0);
    split->setStretchFactor(1, 1);
    const int em = fontMetrics().height();
    // The form whole when the window allows (its own width plus a scroll bar), the curves the rest.
    const int form_w = formWidth_ = formBox->sizeHint().width() + formScroll->verticalScrollBar()->sizeHint().width() + 4;
    split->setSizes({std::max(30 * em, form_w), 40 * em});
    // No fixed minimum width for the form: its layout's own (every spin box wide enough for its
    // largest value) holds, and the scroll area scrolls below it.
    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(4, 4, 4, 4);
    lay->addWidget(split);
    updateEnabled();
}

FinetunePanel::~FinetunePanel() = default;

void FinetunePanel::setModelPath(const QString& path) {
    model_->setText(path);
    const QFileInfo fi(path);
    const QString demo = (fi.isDir() ? QDir(path) : fi.dir()).filePath("demo-stories.txt");
    // A corpus filled in here for an earlier model gives way to this model's; a file the user chose stays.
    const QString data = data_->text().trimmed();
    if ((data.isEmpty() || data == autoData_) && QFileInfo::exists(demo)) {
        data_->setText(demo);
        autoData_ = demo;
    }
    init_->setCurrentIndex(init_->findData(int(modelIsExport_ ? loftq::InitKind::Export : loftq::InitKind::Loftq)));
    updateInitChoices();
}

void FinetunePanel::updateInitChoices() {
    const bool is_export = modelIsExport_;
    auto* items = qobject_cast<QStandardItemModel*>(init_->model());
    const int ex = init_->findData(int(loftq::InitKind::Export));
    if (items && ex >= 0) {
        QStandardItem* it = items->item(ex);
        it->setEnabled(is_export);
        it->setToolTip(is_export ? tr("The export's backbone and its LoRA start, as stored")
                                 : tr("Only for a LoftQ export (a folder with loftq_init/, or a packed export): this "
                                      "model would train its original weights"));
    }
    if (!is_export && init_->currentIndex() == ex) init_->setCurrentIndex(init_->findData(int(loftq::InitKind::Loftq)));
    const int pl = init_->findData(kPlanStart);
    if (items && pl >= 0) {
        items->item(pl)->setEnabled(plan_ != nullptr && !is_export);
        items->item(pl)->setToolTip(plan_ ? tr("Decompose the Plan tab's plan in memory (mixed quantizers, ranks and steps "
                                               "as the grid shows them) and fine-tune from it")
                                          : tr("Open a model in the Plan tab first"));
    }
    if ((!plan_ || is_export) && init_->currentIndex() == pl)
        init_->setCurrentIndex(init_->findData(int(is_export ? loftq::InitKind::Export : loftq::InitKind::Loftq)));
    const bool from_plan = init_->currentData().toInt() == kPlanStart;
    const auto k = from_plan ? loftq::InitKind::Loftq : loftq::InitKind(init_->currentData().toInt());
    quant_->setEnabled(!from_plan && (k == loftq::InitKind::Loftq || k == loftq::InitKind::Qlora));
    rank_->setEnabled(!from_plan && k != loftq::InitKind::Export);
    iters_->setEnabled(!from_plan && k == loftq::InitKind::Loftq);
}

void FinetunePanel::setPlan(std::shared_ptr<const loftq::Plan> plan, const loftq::ResolvedPlan& resolved) {
    plan_ = std::move(plan);
    // "loftq plan: nf2 r8 T5 x10, nf4 r16 T5 x4" (the most used settings first, at most three).
    std::map<std::string, int> count;
    for (const auto& w : resolved.weights)
        ++count[std::string(loftq::quant_format(w.s.quant).name) + " r" + std::to_string(w.s.rank) + " T" + std::to_string(w.s.iters)];
    std::vector<std::pair<int, std::string>> by;
    for (const auto& [k, n] : count) by.push_back({-n, k});
    std::sort(by.begin(), by.end());
    QStringList parts;
    for (size_t i = 0; i < by.size() && i < 3; ++i) parts << QString("%1 x%2").arg(QString::fromStdString(by[i].second)).arg(-by[i].first);
    if (by.size() > 3) parts << tr("…");
    planLabel_ = parts.isEmpty() ? tr("loftq plan (nothing quantized)") : tr("loftq plan: %1").arg(parts.join(", "));
    updateInitChoices();
}

QString FinetunePanel::runLabel() const {
    if (init_->currentData().toInt() == kPlanStart && plan_) return planLabel_;
    const auto k = loftq::InitKind(init_->currentData().toInt());
    switch (k) {
    case loftq::InitKind::Export: return tr("export %1").arg(QFileInfo(model_->text().trimmed()).fileName());
    case loftq::InitKind::Lora16: return tr("lora16 r%1").arg(rank_->value());
    case loftq::InitKind::Qlora: return tr("qlora %1 r%2").arg(quant_->currentText()).arg(rank_->value());
    case loftq::InitKind::Loftq: break;
    }
    return tr("loftq %1 r%2 T%3").arg(quant_->currentText()).arg(rank_->value()).arg(iters_->value());
}

loftq::TrainOptions FinetunePanel::options() const {
    loftq::TrainOptions o;
    o.load.model = model_->text().trimmed().toStdString();
    const bool from_plan = init_->currentData().toInt() == kPlanStart && plan_;
    o.load.init = from_plan ? loftq::InitKind::Loftq : loftq::InitKind(init_->currentData().toInt());
    if (from_plan) o.load.plan = plan_;
    o.load.quant = quant_->currentText().toStdString();
    o.load.rank = rank_->value();
    o.load.iters = iters_->value();
    o.load.seed = uint64_t(seed_->value());
    o.data = data_->text().trimmed().toStdString();
    o.eval_data = evalData_->text().trimmed().toStdString();
    o.out_dir = out_->text().trimmed().toStdString();
    o.device = device_->device();
    o.steps = steps_->value();
    o.batch = batch_->value();
    o.seq = seq_->value();
    o.accum = accum_->value();
    o.lr = lr_->value();
    o.eval_every = evalEvery_->value();
    o.seed = uint64_t(seed_->value());
    o.threads = threads_->value();
    o.load.threads = o.threads;
    return o;
}

void FinetunePanel::setOptions(const loftq::TrainOptions& o) {
    model_->setText(QString::fromStdString(o.load.model));
    init_->setCurrentIndex(std::max(0, init_->findData(o.load.plan && o.load.init == loftq::InitKind::Loftq ? kPlanStart : int(o.load.init))));
    quant_->setCurrentText(QString::fromStdString(o.load.quant));
    rank_->setValue(o.load.rank);
    iters_->setValue(o.load.iters);
    data_->setText(QString::fromStdString(o.data));
    evalData_->setText(QString::fromStdString(o.eval_data));
    out_->setText(QString::fromStdString(o.out_dir));
    steps_->setValue(o.steps);
    batch_->setValue(o.batch);
    seq_->setValue(o.seq);
    accum_->setValue(o.accum);
    lr_->setValue(o.lr);
    evalEvery_->setValue(o.eval_every);
    seed_->setValue(int(o.seed));
    threads_->setValue(o.threads);
    device_->setDevice(o.device);
}

bool FinetunePanel::running() const { return job_->running(); }

bool FinetunePanel::openRun(const QString& dir) {
    std::vector<loftq::MetricsRecord> recs;
    try {
        recs = loftq::read_metrics(dir.toStdString());
    } catch (const std::exception& e) {
        emit message(QString::fromStdString(e.what()), true);
        return false;
    }
    const int run = curves_->addRun(QFileInfo(dir).fileName());
    addRunRow(run, curves_->runName(run));
    const int row = rowOfRun(run);
    bool first_eval = true;
    for (const auto& r : recs) {
        if (r.kind == "train" && std::isfinite(r.train_loss)) {
            curves_->addTrainPoint(run, r.step, r.train_loss);
            setRunCell(row, 1, QString::number(r.step));
            if (std::isfinite(r.tokens_per_s)) setRunCell(row, 4, QString::number(r.tokens_per_s, 'f', 0));
        } else if (r.kind == "eval" && std::isfinite(r.eval_loss)) {
            curves_->addEvalPoint(run, r.step, r.eval_loss);
            if (first_eval) setRunCell(row, 2, QString::number(r.eval_loss, 'f', 4));
            setRunCell(row, 3, QString::number(r.eval_loss, 'f', 4));
            first_eval = false;
        } else if (r.kind == "eval_original" && std::isfinite(r.eval_loss) && !std::isfinite(curves_->reference())) {
            curves_->setReference(r.eval_loss, tr("original model (held-out)"));
        }
    }
    curves_->replotNow();
    emit message(tr("opened run %1 (%2 metrics lines)").arg(dir).arg(recs.size()), false);
    emit runReady(curves_->runName(run), dir);
    return true;
}

bool FinetunePanel::start() {
    if (job_->running()) return false;
    loftq::TrainOptions o = options();
    if (o.load.model.empty() || o.data.empty()) {
        status_->setText(tr("Choose a model and a data file first."));
        emit message(status_->text(), true);
        return false;
    }
    const QString name = runLabel();   // what is really trained (the export's own settings for an export)
    if (o.out_dir.empty()) {
        const QString base = QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation) + "/runs";
        o.out_dir = QDir(base).filePath(QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss-zzz") + "-" +
                                        QString(name).replace(' ', '-')).toStdString();
    }
    lastOut_ = QString::fromStdString(o.out_dir);
    currentRun_ = curves_->addRun(name);
    addRunRow(currentRun_, curves_->runName(currentRun_));
    sample_->clear();
    // The original model's loss, once per (model, held-out data, seq, eval batches).
    const QString refKey = QString::fromStdString(o.load.model + "|" + (o.eval_data.empty() ? o.data + "#split" : o.eval_data) + "|" +
                                                  std::to_string(o.seq) + "|" + std::to_string(o.eval_batches));
    o.eval_original = measureOriginal_->isChecked() && (refKey != referenceKey_ || !std::isfinite(curves_->reference()));
    if (!measureOriginal_->isChecked()) curves_->setReference(NAN, {});
    if (o.eval_original) {
        curves_->setReference(NAN, {});
        referenceKey_ = refKey;
    }
    progress_->setValue(0);
    status_->setText(tr("Loading %1…").arg(model_->text()));
    emit message(tr("fine-tune \"%1\" started: %2").arg(name, lastOut_), false);
    if (!runOn_->local()) return startRemote(o, name);   // through a launcher: the same run, on the target
    pending_ = std::make_shared<loftq::TrainResult>();
    auto result = pending_;
    job_->start([this, o, result](const loftq::CancelToken& token) {
        *result = loftq::run_finetune(o, [this](const loftq::TrainEvent& e) { job_->post([this, e] { onEvent(e); }); }, token);
    });
    updateEnabled();
    return true;
}

void FinetunePanel::stop() {
    if (!job_->running()) return;
    job_->cancel();
    status_->setText(tr("Stopping…"));
}

void FinetunePanel::onEvent(const loftq::TrainEvent& e) {
    const int row = rowOfRun(currentRun_);
    auto set = [&](int col, const QString& t) {
        if (row >= 0) setRunCell(row, col, t);
    };
    if (e.kind == loftq::TrainEventKind::Eval && e.step < 0) {   // the original model, measured first
        curves_->setReference(e.eval_loss, tr("original model (held-out)"));
        return;
    }
    switch (e.kind) {
    case loftq::TrainEventKind::Step:
        curves_->addTrainPoint(currentRun_, e.step, e.train_loss);
        set(1, QString::number(e.step));
        set(4, QString::number(e.tokens_per_s, 'f', 0));
        break;
    case loftq::TrainEventKind::Eval:
        curves_->addEvalPoint(currentRun_, e.step, e.eval_loss);
        if (row >= 0 && !runs_->item(row, 2)) set(2, QString::number(e.eval_loss, 'f', 4));
        set(3, QString::number(e.eval_loss, 'f', 4));
        break;
    case loftq::TrainEventKind::Sample:
        samples_[currentRun_] = QString::fromStdString(e.text);
        if (runAtRow(runs_->currentRow()) == currentRun_ || runs_->currentRow() < 0) sample_->setPlainText(samples_[currentRun_]);
        break;
    case loftq::TrainEventKind::Message:
    case loftq::TrainEventKind::Checkpoint:
        if (!e.text.empty()) emit message(QString::fromStdString(e.text), false);
        break;
    default:
        break;
    }
    if (e.steps > 0) {
        progress_->setValue(int(1000.0 * e.fraction));
        status_->setText(tr("step %1/%2 · train loss %3 · %4 tokens/s · %5 s left")
                             .arg(e.step)
                             .arg(e.steps)
                             .arg(e.train_loss, 0, 'f', 4)
                             .arg(e.tokens_per_s, 0, 'f', 0)
                             .arg(e.eta >= 0 ? QString::number(e.eta, 'f', 0) : QString("?")));
    }
}

void FinetunePanel::onEnded(bool ok, const QString& why) {
    if (ok && pending_) {
        lastResult_ = *pending_;
        status_->setText(tr("Done: held-out loss %1 → %2 in %3 s; adapter in %4/adapter")
                             .arg(lastResult_.first_eval_loss, 0, 'f', 4)
                             .arg(lastResult_.final_eval_loss, 0, 'f', 4)
                             .arg(lastResult_.seconds, 0, 'f', 1)
                             .arg(lastOut_));
        progress_->setValue(1000);
        emit message(status_->text(), false);
        emit runReady(curves_->runName(currentRun_), lastOut_);
    } else {
        status_->setText(why);
        emit message(tr("fine-tune: %1").arg(why), why.startsWith(tr("stopped")) ? false : true);
    }
    curves_->replotNow();
    updateEnabled();
    emit runFinished(ok);
}

void FinetunePanel::addRunRow(int run, const QString& name) {
    QSignalBlocker block(runs_);
    const int row = runs_->rowCount();
    runs_->insertRow(row);
    auto* it = new QTableWidgetItem(name);
    it->setData(Qt::UserRole, run);
    it->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled | Qt::ItemIsEditable);
    runs_->setItem(row, 0, it);
}

void FinetunePanel::setRunCell(int row, int col, const QString& text) {
    QSignalBlocker block(runs_);
    auto* it = new QTableWidgetItem(text);
    it->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled);
    runs_->setItem(row, col, it);
}

int FinetunePanel::runAtRow(int row) const {
    const QTableWidgetItem* it = row >= 0 && row < runs_->rowCount() ? runs_->item(row, 0) : nullptr;
    return it ? it->data(Qt::UserRole).toInt() : -1;
}

int FinetunePanel::rowOfRun(int run) const {
    for (int r = 0; r < runs_->rowCount(); ++r)
        if (runAtRow(r) == run) return r;
    return -1;
}

bool FinetunePanel::removeRunAt(int row) {
    const int run = runAtRow(row);
    if (run < 0) return false;
    if (job_->running() && run == currentRun_) {
        emit message(tr("The run in progress cannot be removed; stop it first."), true);
        return false;
    }
    curves_->removeRun(run);
    samples_.remove(run);
    runs_->removeRow(row);
    if (runs_->currentRow() < 0) sample_->clear();
    return true;
}

QString FinetunePanel::sampleText() const { return sample_->toPlainText(); }

void FinetunePanel::resizeEvent(QResizeEvent* e) {
    QWidget::resizeEvent(e);
    // In a narrow window the curves keep at least two fifths of the width (up to 26 em), so that
    // their legend and axes stay readable; the form then scrolls sideways.
    // Vertically the form (with its status line) whole when there is room, the runs table and
    // the sample sharing the rest.
    const QList<int> vs = leftSplit_->sizes();
    QWidget* form = static_cast<QScrollArea*>(leftSplit_->widget(0))->widget();
    const int fw = std::max(form->minimumSizeHint().width(), leftSplit_->width());
    const int form_h = (form->hasHeightForWidth() ? form->heightForWidth(fw) : form->sizeHint().height()) + 2;
    const int em = fontMetrics().height();
    if (vs.size() == 3 && vs[0] != form_h) {
        const int total = vs[0] + vs[1] + vs[2];
        const int top = std::min(form_h, total - 10 * em);   // the runs table and the sample keep 10 em
        if (top > 0 && top != vs[0]) leftSplit_->setSizes({top, (total - top) / 2, total - top - (total - top) / 2});
    }
    const QList<int> sz = split_->sizes();
    if (sz.size() != 2) return;
    const int total = sz[0] + sz[1], want = std::min(total * 2 / 5, 26 * fontMetrics().height());
    if (sz[1] < want)
        split_->setSizes({total - want, want});
    else if (sz[0] < formWidth_ && total - formWidth_ >= want)   // room again (the window grew): the form whole
        split_->setSizes({formWidth_, total - formWidth_});
}

void FinetunePanel::updateEnabled() {
    startButton_->setEnabled(!job_->running());
    stopButton_->setEnabled(job_->running());
}

}  // namespace studio
