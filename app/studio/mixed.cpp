// mixed.cpp: see studio/mixed.h.
#include "studio/mixed.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSlider>
#include <QSpinBox>
#include <QTableWidget>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>
#include <QtConcurrent>
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "plan_document.h"
#include "plot_style.h"
#include "quant/quantizer.h"
#include "studio/job_thread.h"

namespace studio {

const char* const MixedPanel::kUniformLabels[8] = {"nf2 r16", "nf2 r64", "nf3 r16", "nf3 r64",
                                                   "nf4 r16", "nf4 r64", "int8 r16", "int8 r64"};

namespace {

// The file's size and modification time, folded: a changed calibration file makes cached
// statistics stale (the engine's own key is a content hash; this is the GUI's cheap check).
qint64 file_stamp(const std::string& path) {
    const QFileInfo fi(QString::fromStdString(path));
    return fi.exists() ? fi.size() * 1000003 + fi.lastModified().toMSecsSinceEpoch() : -1;
}

bool same_calib(const loftq::CalibOptions& a, const loftq::CalibOptions& b) {
    return a.model == b.model && a.data == b.data && a.tokenizer == b.tokenizer && a.tokens == b.tokens && a.seq == b.seq &&
           a.max_full_dim == b.max_full_dim && a.min_tokens == b.min_tokens;
}

std::string plan_key(const loftq::Plan& p) { return loftq::plan_to_json(p).dump(); }

QString start_name(const std::string& s) {
    return s == "original" ? MixedPanel::tr("original") : s == "qlora" ? MixedPanel::tr("QLoRA init") : MixedPanel::tr("LoftQ init");
}

const loftq::EvalPlanRow* row_of(const loftq::EvalPlanResult& r, const char* start) {
    for (const auto& row : r.rows)
        if (row.start == start) return &row;
    return nullptr;
}

}  // namespace

MixedPanel::MixedPanel(PlanDocument* doc, QWidget* parent) : QWidget(parent), doc_(doc) {
    setObjectName("MixedPanel");
    sweepJob_ = new JobThread(this);
    evalJob_ = new JobThread(this);
    connect(sweepJob_, &JobThread::succeeded, this, [this] { onSweepEnded(true, QString()); });
    connect(sweepJob_, &JobThread::cancelled, this, [this] { onSweepEnded(false, tr("sweep cancelled")); });
    connect(sweepJob_, &JobThread::failed, this, [this](const QString& m) { onSweepEnded(false, m); });
    connect(evalJob_, &JobThread::succeeded, this, [this] { onEvalEnded(true, QString()); });
    connect(evalJob_, &JobThread::cancelled, this, [this] { onEvalEnded(false, tr("evaluation cancelled")); });
    connect(evalJob_, &JobThread::failed, this, [this](const QString& m) { onEvalEnded(false, m); });
    allocWatcher_ = new QFutureWatcher<MixedAllocation>(this);
    connect(allocWatcher_, &QFutureWatcherBase::finished, this, &MixedPanel::showAllocation);
    allocDebounce_ = new QTimer(this);
    allocDebounce_->setSingleShot(true);
    allocDebounce_->setInterval(60);
    connect(allocDebounce_, &QTimer::timeout, this, &MixedPanel::startAllocation);
    buildUi();
    heldOut_->setText(QSettings().value("mixed/held_out").toString());
    connect(doc_, &PlanDocument::modelChanged, this, &MixedPanel::onModelChanged);
    connect(doc_, &PlanDocument::planChanged, this, [this] {
        updateChart();
        updateEnabled();
    });
    updateEnabled();
    updateChart();
}

MixedPanel::~MixedPanel() {
    // Cancel and join the jobs while this panel is whole (their posted calls then die with
    // them); an allocation task holds its own reference to its sweep.
    delete sweepJob_;
    delete evalJob_;
    allocWatcher_->waitForFinished();
}

void MixedPanel::buildUi() {
    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(4, 4, 4, 4);
    lay->setSpacing(4);
    const int em = fontMetrics().height();

    // Sweep: button, cancel, the settings' disclosure button, progress, status.
    auto* row2 = new QHBoxLayout;
    sweepButton_ = new QPushButton(tr("Sweep"), this);
    sweepButton_->setObjectName("SweepButton");
    sweepButton_->setToolTip(tr("Measure every target weight at every candidate setting (cached), then the least-damage plan "
                                "for each budget"));
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    settingsButton_ = new QToolButton(this);
    settingsButton_->setText(tr("Settings"));
    settingsButton_->setToolTip(tr("Candidate quantizers and ranks, and the calibration text"));
    settingsButton_->setCheckable(true);
    settingsButton_->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    sweepProgress_ = new QProgressBar(this);
    sweepProgress_->setRange(0, 1000);
    sweepProgress_->setTextVisible(true);
    sweepStatus_ = new QLabel(this);
    sweepStatus_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    sweepStatus_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);   // long text is cut, not widening the dock
    row2->addWidget(sweepButton_);
    row2->addWidget(cancelButton_);
    row2->addWidget(settingsButton_);
    row2->addWidget(sweepProgress_, 1);
    row2->addWidget(sweepStatus_, 2);
    lay->addLayout(row2);
    connect(sweepButton_, &QPushButton::clicked, this, &MixedPanel::startSweep);
    connect(cancelButton_, &QPushButton::clicked, this, &MixedPanel::cancelSweep);

    // Candidates and calibration: open until a sweep arrives (then the status line sums them up
    // and the chart gets the room), and whenever the Settings button is checked.
    settings_ = new QWidget(this);
    auto* form = new QGridLayout(settings_);
    form->setContentsMargins(0, 0, 0, 0);
    form->setHorizontalSpacing(6);
    form->setVerticalSpacing(3);
    quants_ = new QLineEdit("int8,nf4,nf3,nf2", settings_);
    quants_->setToolTip(tr("Candidate quantizers, comma-separated (int2..int8, nf2..nf4)"));
    ranks_ = new QLineEdit("8,16,32,64", settings_);
    ranks_->setToolTip(tr("Candidate LoRA ranks, comma-separated"));
    ranks_->setMaximumWidth(7 * em);
    keep_ = new QCheckBox(tr("keep"), settings_);
    keep_->setChecked(true);
    keep_->setToolTip(tr("Also offer keeping a weight in 16-bit"));
    form->addWidget(new QLabel(tr("Quantizers"), settings_), 0, 0);
    auto* row0 = new QHBoxLayout;
    row0->addWidget(quants_, 2);
    row0->addWidget(new QLabel(tr("ranks"), settings_));
    row0->addWidget(ranks_, 1);
    row0->addWidget(keep_);
    form->addLayout(row0, 0, 1);
    calibFile_ = new QLineEdit(settings_);
    calibFile_->setPlaceholderText(tr("optional: text or JSONL for output errors"));
    calibFile_->setToolTip(tr("Calibration text (or JSONL): the sweep and the runs then also measure each projection's "
                              "output error ‖X(W−Q−BA)ᵀ‖/‖XWᵀ‖ on it"));
    calibBrowse_ = new QPushButton(tr("…"), settings_);
    calibBrowse_->setMaximumWidth(3 * em);
    calibTokens_ = new QSpinBox(settings_);
    calibTokens_->setRange(256, 100000000);
    calibTokens_->setValue(4096);
    calibTokens_->setToolTip(tr("Calibration token budget"));
    form->addWidget(new QLabel(tr("Calibration"), settings_), 1, 0);
    auto* row1 = new QHBoxLayout;
    row1->addWidget(calibFile_, 1);
    row1->addWidget(calibBrowse_);
    row1->addWidget(new QLabel(tr("tokens"), settings_));
    row1->addWidget(calibTokens_);
    form->addLayout(row1, 1, 1);
    lay->addWidget(settings_);
    connect(calibBrowse_, &QPushButton::clicked, this, [this] {
        QSettings s;
        const QString f = QFileDialog::getOpenFileName(this, tr("Calibration text"), s.value("mixed/calib_dir").toString(),
                                                       tr("Text or JSONL (*.txt *.jsonl *.json);;All files (*)"));
        if (f.isEmpty()) return;
        s.setValue("mixed/calib_dir", QFileInfo(f).absolutePath());
        calibFile_->setText(f);
    });
    connect(settingsButton_, &QToolButton::toggled, this, [this](bool on) {
        settings_->setVisible(on);
        settingsButton_->setArrowType(on ? Qt::DownArrow : Qt::RightArrow);
    });
    settingsButton_->setChecked(true);
    settingsButton_->setArrowType(Qt::DownArrow);
    for (QLineEdit* e : {quants_, ranks_, calibFile_})
        connect(e, &QLineEdit::textChanged, this, [this] { updateEnabled(); });
    connect(keep_, &QCheckBox::toggled, this, [this] { updateEnabled(); });
    connect(calibTokens_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { updateEnabled(); });

    chart_ = new ParetoChart(this);
    chart_->setObjectName("ParetoChart");
    chart_->setMinimumHeight(10 * em);
    lay->addWidget(chart_, 1);
    connect(chart_, &ParetoChart::frontClicked, this, &MixedPanel::applyFront);
    connect(chart_, &ParetoChart::uniformClicked, this, &MixedPanel::applyUniform);

    // Budget slider, x unit, Apply.
    auto* row3 = new QHBoxLayout;
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setRange(0, kSliderSteps);
    slider_->setValue(kSliderSteps / 2);
    slider_->setToolTip(tr("Memory budget: the least-damage plan that fits is shown, Apply loads it"));
    applyButton_ = new QPushButton(tr("Apply"), this);
    applyButton_->setObjectName("ApplyBudgetButton");
    applyButton_->setToolTip(tr("Load the allocation at this budget into the grid (undoable)"));
    xUnit_ = new QComboBox(this);
    xUnit_->addItems({tr("bits/param"), tr("bytes")});
    xUnit_->setToolTip(tr("x axis of the chart"));
    row3->addWidget(new QLabel(tr("Budget"), this));
    row3->addWidget(slider_, 1);
    row3->addWidget(applyButton_);
    row3->addWidget(xUnit_);
    lay->addLayout(row3);
    budgetLabel_ = new QLabel(this);
    budgetLabel_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    budgetLabel_->setWordWrap(true);
    lay->addWidget(budgetLabel_);
    connect(slider_, &QSlider::valueChanged, this, &MixedPanel::sliderMoved);
    connect(applyButton_, &QPushButton::clicked, this, &MixedPanel::applyBudget);
    connect(xUnit_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int i) {
        chart_->setXUnit(i == 0 ? ParetoChart::XUnit::BitsPerParam : ParetoChart::XUnit::Bytes);
    });
    connect(chart_, &ParetoChart::xUnitChanged, this, [this](ParetoChart::XUnit u) {
        xUnit_->setCurrentIndex(u == ParetoChart::XUnit::BitsPerParam ? 0 : 1);
    });

    // Evaluate: held-out file, examples, button, cancel, progress; the table.
    auto* row4 = new QHBoxLayout;
    evalButton_ = new QPushButton(tr("Evaluate plan"), this);
    evalButton_->setObjectName("EvaluateButton");
    evalButton_->setToolTip(tr("Held-out loss of the original model, the grid plan's QLoRA init and its LoftQ init"));
    heldOut_ = new QLineEdit(this);
    heldOut_->setPlaceholderText(tr("held-out text or JSONL"));
    heldBrowse_ = new QPushButton(tr("…"), this);
    heldBrowse_->setMaximumWidth(3 * em);
    evalExamples_ = new QSpinBox(this);
    evalExamples_->setRange(0, 1000000);
    evalExamples_->setValue(64);
    evalExamples_->setSpecialValueText(tr("all"));
    evalExamples_->setToolTip(tr("Sequences of 128 tokens to evaluate (all: the whole file)"));
    evalCancel_ = new QPushButton(tr("Cancel"), this);
    evalProgress_ = new QProgressBar(this);
    evalProgress_->setRange(0, 1000);
    evalProgress_->setMaximumWidth(8 * em);
    row4->addWidget(evalButton_);
    row4->addWidget(heldOut_, 1);
    row4->addWidget(heldBrowse_);
    row4->addWidget(evalExamples_);
    row4->addWidget(evalCancel_);
    row4->addWidget(evalProgress_);
    lay->addLayout(row4);
    connect(evalButton_, &QPushButton::clicked, this, &MixedPanel::startEval);
    connect(evalCancel_, &QPushButton::clicked, this, &MixedPanel::cancelEval);
    connect(heldBrowse_, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Held-out text"), QFileInfo(heldOut()).absolutePath(),
                                                       tr("Text or JSONL (*.txt *.jsonl *.json);;All files (*)"));
        if (!f.isEmpty()) setHeldOut(f);
    });
    connect(heldOut_, &QLineEdit::editingFinished, this, [this] { QSettings().setValue("mixed/held_out", heldOut()); });

    evalCaption_ = new QLabel(this);
    evalCaption_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    evalCaption_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    evalCaption_->setVisible(false);   // until a plan was evaluated
    lay->addWidget(evalCaption_);
    table_ = new QTableWidget(0, 4, this);
    table_->setObjectName("MixedEvalTable");
    table_->setHorizontalHeaderLabels({tr("model"), tr("held-out loss"), tr("perplexity"), tr("tokens")});
    table_->verticalHeader()->setVisible(false);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionMode(QAbstractItemView::NoSelection);
    table_->verticalHeader()->setDefaultSectionSize(em + 6);
    // Header + three rows, no scrolling.
    table_->setFixedHeight(table_->horizontalHeader()->sizeHint().height() + 3 * (em + 6) + 2 * table_->frameWidth());
    table_->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    lay->addWidget(table_);
}

void MixedPanel::setSourceAvailable(bool ok) {
    source_ = ok;
    updateEnabled();
}

void MixedPanel::setCandidates(const QString& quants, const QString& ranks, bool keep) {
    quants_->setText(quants);
    ranks_->setText(ranks);
    keep_->setChecked(keep);
}

void MixedPanel::setCalibration(const QString& file, int tokens) {
    calibFile_->setText(file);
    calibTokens_->setValue(tokens);
}

QString MixedPanel::calibrationFile() const { return calibFile_->text().trimmed(); }
int MixedPanel::calibrationTokens() const { return calibTokens_->value(); }
QString MixedPanel::heldOut() const { return heldOut_->text().trimmed(); }
void MixedPanel::setEvalExamples(int n) { evalExamples_->setValue(n); }

void MixedPanel::setHeldOut(const QString& file) {
    heldOut_->setText(file);
    QSettings().setValue("mixed/held_out", file);
    updateEnabled();
}

std::optional<loftq::CalibOptions> MixedPanel::calibOptions() const {
    if (calibrationFile().isEmpty() || !doc_->hasModel()) return std::nullopt;
    loftq::CalibOptions o;
    o.model = doc_->modelPath().toStdString();
    o.data = calibrationFile().toStdString();
    o.tokens = calibrationTokens();
    o.threads = threads_;
    return o;
}

std::shared_ptr<const loftq::CalibStats> MixedPanel::cachedCalibration() const {
    const auto o = calibOptions();
    if (!o || !calib_ || !calibFor_ || !same_calib(*o, *calibFor_) || file_stamp(o->data) != calibStamp_) return nullptr;
    return calib_;
}

void MixedPanel::rememberCalibration(std::shared_ptr<const loftq::CalibStats> stats, const loftq::CalibOptions& options) {
    calib_ = std::move(stats);
    calibFor_ = options;
    calibStamp_ = file_stamp(options.data);
}

bool MixedPanel::sweeping() const { return sweepJob_->running(); }
bool MixedPanel::evaluating() const { return evalJob_->running(); }

void MixedPanel::fail(const QString& text) {
    emit message(text, true);
    sweepStatus_->setText(text.left(160));
}

bool MixedPanel::startSweep() {
    if (sweepJob_->running()) return false;
    if (!doc_->hasModel() || !source_) {
        fail(tr("Sweep: open a model with its source weights first"));
        return false;
    }
    loftq::SweepOptions so;
    so.model = doc_->modelPath().toStdString();
    // The base: the grid's plan, or, when the grid holds a plan loaded from here, that plan's base.
    so.plan = !appliedPlan_.empty() && plan_key(doc_->plan()) == appliedPlan_ ? appliedBase_ : doc_->plan();
    so.quants.clear();
    for (const QString& t : quants_->text().split(',', Qt::SkipEmptyParts)) {
        const auto k = loftq::quant_kind_from_name(t.trimmed().toStdString());
        if (!k) {
            fail(tr("Sweep: unknown quantizer '%1' (use int2..int8, nf2..nf4)").arg(t.trimmed()));
            return false;
        }
        so.quants.push_back(*k);
    }
    so.ranks.clear();
    for (const QString& t : ranks_->text().split(',', Qt::SkipEmptyParts)) {
        bool ok = false;
        const int r = t.trimmed().toInt(&ok);
        if (!ok || r <= 0) {
            fail(tr("Sweep: '%1' is not a LoRA rank").arg(t.trimmed()));
            return false;
        }
        so.ranks.push_back(r);
    }
    so.keep = keep_->isChecked();
    so.cache_dir = loftq::default_sweep_cache_dir();
    so.threads = threads_;
    const auto calib = calibOptions();
    if (calib && !QFileInfo::exists(calibrationFile())) {
        fail(tr("Sweep: the calibration file %1 does not exist").arg(calibrationFile()));
        return false;
    }
    auto cached = cachedCalibration();

    sweepProgress_->setValue(0);
    sweepProgress_->setFormat(calib && !cached ? tr("calibrating") : tr("sweeping"));
    sweepStatus_->setText(calib && !cached ? tr("collecting calibration statistics…") : tr("starting…"));
    const int gen = modelGen_;
    const bool started = sweepJob_->start([this, so = std::move(so), calib, cached, gen](const loftq::CancelToken& token) mutable {
        JobThread* job = sweepJob_;
        auto say = [this, job](const QString& text) { job->post([this, text] { emit message(text, false); }); };
        if (calib) {
            so.calib = cached;
            if (!so.calib) {
                try {
                    auto stats = std::make_shared<const loftq::CalibStats>(loftq::collect_calibration(*calib, [this, job](double f) {
                        job->post([this, f] { sweepProgress_->setValue(int(f * 1000)); });
                    }, token));
                    so.calib = stats;
                    job->post([this, stats, o = *calib, gen] {
                        if (gen == modelGen_) rememberCalibration(stats, o);
                    });
                    say(tr("calibration: %1 tokens of %2").arg(stats->tokens).arg(QString::fromStdString(calib->data)));
                    for (const auto& n : stats->notes) say(tr("calibration: %1").arg(QString::fromStdString(n)));
                } catch (const loftq::CalibrationUnsupported& e) {
                    say(tr("calibration skipped: %1; the sweep uses weight errors").arg(QString::fromStdString(e.what())));
                }
            }
            job->post([this] {
                sweepProgress_->setValue(0);
                sweepProgress_->setFormat(tr("sweeping"));
            });
        }
        auto out = std::make_shared<MixedSweep>();
        out->base = so.plan;
        out->sweep = loftq::run_sweep(so, [this, job](const loftq::SweepEvent& e) {
            job->post([this, e] {
                if (!e.message.empty()) {
                    emit message(QString::fromStdString(e.message), false);
                    return;
                }
                sweepProgress_->setValue(int(e.fraction * 1000));
                sweepProgress_->setFormat(tr("%1/%2 weights").arg(e.weights_done).arg(e.weights_total));
                sweepStatus_->setText(e.eta >= 0 ? tr("%1 elapsed, %2 left").arg(format_seconds(e.elapsed), format_seconds(e.eta))
                                                 : format_seconds(e.elapsed));
            });
        }, token);
        token.throw_if_cancelled();   // a cancel during a cache hit still cancels
        job->post([this] { sweepStatus_->setText(tr("allocating the front…")); });
        out->alloc.output_error = true;
        out->min_bytes = loftq::min_plan_bytes(out->sweep, out->alloc);
        out->max_bytes = loftq::max_plan_bytes(out->sweep, out->alloc);
        out->front = loftq::allocation_front(out->sweep, out->alloc, kFrontPoints);
        for (const char* label : kUniformLabels)
            if (auto u = loftq::uniform_point(out->sweep, label, out->alloc.output_error)) out->uniform.push_back(std::move(*u));
        token.throw_if_cancelled();
        std::shared_ptr<const MixedSweep> done = out;
        job->post([this, done, gen] {
            if (gen == modelGen_) onSweepDone(done);   // else the model changed meanwhile
        });
    });
    if (!started) return false;
    emit message(tr("sweep of %1 started").arg(QFileInfo(doc_->modelPath()).fileName()), false);
    updateEnabled();
    return true;
}

void MixedPanel::cancelSweep() {
    if (!sweepJob_->running()) return;
    sweepJob_->cancel();
    sweepStatus_->setText(tr("cancelling…"));
}

void MixedPanel::onSweepDone(std::shared_ptr<const MixedSweep> s) {
    sweep_ = std::move(s);
    budgetAlloc_.reset();
    const auto& sw = sweep_->sweep;
    for (const auto& n : sw.notes) emit message(tr("sweep: %1").arg(QString::fromStdString(n)), false);
    const QString summary = tr("%1 weights × %2 candidates (%3, %4) in %5%6")
                                .arg(sw.weights.size())
                                .arg(sw.weights.empty() ? 0 : sw.weights[0].candidates.size())
                                .arg(QString::fromLatin1(loftq::sweep_mode_name(sw.mode)),
                                     sw.calibrated ? tr("output errors on %1").arg(QFileInfo(calibrationFile()).fileName())
                                                   : tr("weight errors"),
                                     format_seconds(sw.seconds),
                                     sw.from_cache ? tr(", cached") : QString());
    emit message(tr("sweep: %1").arg(summary), false);
    // The status line is narrow: the short form, the whole summary on hover.
    sweepStatus_->setText(tr("%1 × %2, %3%4")
                              .arg(sw.weights.size())
                              .arg(sw.weights.empty() ? 0 : sw.weights[0].candidates.size())
                              .arg(sw.calibrated ? tr("output errors") : tr("weight errors"), sw.from_cache ? tr(", cached") : QString()));
    sweepStatus_->setToolTip(summary);
    settingsButton_->setChecked(false);   // the chart gets the room; the summary names the settings
    // The slider starts where the grid's plan is (clamped to the range).
    const QSignalBlocker block(slider_);
    setBudget(doc_->size().total_bytes);
    updateChart();
    sliderMoved();
}

void MixedPanel::onSweepEnded(bool ok, const QString& why) {
    if (ok) {
        sweepProgress_->setValue(1000);
        sweepProgress_->setFormat(tr("done"));
    } else {
        sweepProgress_->setValue(0);
        sweepProgress_->setFormat(QString());
        sweepStatus_->setText(why.left(160));
        emit message(why.startsWith(tr("sweep")) ? why : tr("sweep failed: %1").arg(why), why != tr("sweep cancelled"));
    }
    updateEnabled();
    emit sweepFinished(ok);
}

uint64_t MixedPanel::budget() const {
    if (!sweep_) return 0;
    const double f = double(slider_->value()) / kSliderSteps;
    return sweep_->min_bytes + uint64_t(std::llround(f * double(sweep_->max_bytes - sweep_->min_bytes)));
}

void MixedPanel::setBudget(uint64_t bytes) {
    if (!sweep_ || sweep_->max_bytes <= sweep_->min_bytes) return;
    const double f = (double(bytes) - double(sweep_->min_bytes)) / double(sweep_->max_bytes - sweep_->min_bytes);
    slider_->setValue(int(std::lround(std::clamp(f, 0.0, 1.0) * kSliderSteps)));
}

void MixedPanel::sliderMoved() {
    if (!sweep_) return;
    budgetAlloc_.reset();
    chart_->setMarker(double(budget()));
    const double bits = 8.0 * double(budget()) / double(std::max<uint64_t>(1, sweep_->sweep.params));
    budgetLabel_->setText(tr("budget %1 (%2 bits/param): allocating…").arg(format_bytes_decimal(budget())).arg(bits, 0, 'f', 3));
    updateEnabled();
    allocDebounce_->start();
}

void MixedPanel::startAllocation() {
    if (!sweep_) return;
    if (allocWatcher_->isRunning()) return;   // showAllocation() starts the newest budget next
    const uint64_t b = budget();
    auto s = sweep_;
    allocWatcher_->setFuture(QtConcurrent::run([s, b]() -> MixedAllocation {
        loftq::AllocOptions o = s->alloc;
        o.budget_bytes = b;
        try {
            return {s, b, loftq::allocate(s->sweep, o)};
        } catch (const std::exception&) {   // below the smallest plan (cannot happen from the slider)
            return {s, b, std::nullopt};
        }
    }));
}

void MixedPanel::showAllocation() {
    const MixedAllocation r = allocWatcher_->result();
    const uint64_t b = r.budget;
    const std::optional<loftq::Allocation>& alloc = r.alloc;
    if (!sweep_ || r.sweep != sweep_ || b != budget()) {   // the slider moved on, or a new sweep came
        if (sweep_) startAllocation();
        return;
    }
    budgetAlloc_ = alloc;
    budgetAllocFor_ = b;
    const double params = double(std::max<uint64_t>(1, sweep_->sweep.params));
    if (!alloc) {
        budgetLabel_->setText(tr("budget %1: below the smallest plan").arg(format_bytes_decimal(b)));
        chart_->setMarker(double(b));
    } else {
        budgetLabel_->setText(tr("budget %1: plan %2, %3 bits/param, damage %4, %5")
                                  .arg(format_bytes_decimal(b), format_bytes_decimal(alloc->bytes))
                                  .arg(8.0 * double(alloc->bytes) / params, 0, 'f', 2)
                                  .arg(format_sig(alloc->damage, 3))
                                  .arg(alloc->optimal ? tr("optimal") : tr("gap %1%").arg(format_sig(100 * alloc->gap, 3))));
        chart_->setMarker(double(b), double(alloc->bytes), alloc->damage);
    }
    updateEnabled();
    emit budgetAllocated();
}

void MixedPanel::applyChoice(const std::vector<int>& choice, const QString& what) {
    loftq::Allocation a;
    a.choice = choice;
    const loftq::Plan plan = loftq::plan_from_allocation(sweep_->sweep, a, sweep_->base);
    appliedPlan_ = plan_key(plan);
    appliedBase_ = sweep_->base;
    doc_->replacePlan(plan, what);
    emit message(tr("%1: %2, %3 bits/param")
                     .arg(what, format_bytes_decimal(doc_->size().total_bytes))
                     .arg(doc_->size().bits_per_param(), 0, 'f', 3),
                 false);
}

bool MixedPanel::applyFront(int index) {
    if (!sweep_ || index < 0 || size_t(index) >= sweep_->front.size() || !doc_->hasModel()) return false;
    const auto& f = sweep_->front[size_t(index)];
    applyChoice(f.alloc.choice, tr("Mixed precision: least damage at %1 bits/param").arg(f.bits_per_param, 0, 'f', 2));
    return true;
}

bool MixedPanel::applyUniform(int index) {
    if (!sweep_ || index < 0 || size_t(index) >= sweep_->uniform.size() || !doc_->hasModel()) return false;
    const auto& u = sweep_->uniform[size_t(index)];
    applyChoice(u.choice, tr("Mixed precision: uniform %1").arg(QString::fromStdString(u.label)));
    return true;
}

bool MixedPanel::applyBudget() {
    if (!sweep_ || !budgetAlloc_ || budgetAllocFor_ != budget() || !doc_->hasModel()) return false;
    applyChoice(budgetAlloc_->choice, tr("Mixed precision: least damage under %1").arg(format_bytes_decimal(budget())));
    return true;
}

double MixedPanel::currentDamage() const {
    if (!sweep_ || !doc_->hasModel()) return NAN;
    std::map<std::string, const loftq::WeightPlan*> targets;
    for (const auto& w : doc_->resolved().weights) targets[w.name] = &w;
    double damage = 0;
    size_t matched = 0;
    for (const auto& ws : sweep_->sweep.weights) {
        const auto it = targets.find(ws.name);
        const loftq::WeightPlan* wp = it == targets.end() ? nullptr : it->second;
        const loftq::SweepCandidate* found = nullptr;
        for (const auto& c : ws.candidates) {
            const bool match = wp ? !c.keep && c.s.quant == wp->s.quant && c.s.rank == wp->s.rank && c.s.block == wp->s.block &&
                                        c.s.iters == wp->s.iters && c.s.svd == wp->s.svd
                                  : c.keep;
            if (match) {
                found = &c;
                break;
            }
        }
        if (!found) return NAN;
        damage += loftq::candidate_damage(*found, sweep_->alloc.output_error && sweep_->sweep.calibrated);
        matched += wp ? 1 : 0;
    }
    // A target the sweep does not know (e.g. a rule added after it) has no damage to count.
    return matched == targets.size() ? damage : NAN;
}

void MixedPanel::updateChart() {
    ParetoData data;
    if (sweep_) {
        const auto& sw = sweep_->sweep;
        data.params = double(sw.params);
        data.metric = sw.calibrated && sweep_->alloc.output_error ? tr("output error") : tr("weight error");
        for (const auto& f : sweep_->front) data.front.push_back({double(f.bytes), f.damage, QString(), f.alloc.optimal});
        for (const auto& u : sweep_->uniform) data.uniform.push_back({double(u.bytes), u.damage, QString::fromStdString(u.label)});
        const double cur = currentDamage();
        if (std::isfinite(cur)) data.current = ParetoPoint{double(doc_->size().total_bytes), cur, tr("plan in the grid")};
    } else if (doc_->hasModel()) {
        data.params = double(doc_->size().params);
    }
    for (const auto& e : evals_) {
        const auto* lo = row_of(e.result, "loftq");
        if (!lo) continue;
        QString tip;
        for (const auto& r : e.result.rows)
            tip += (tip.isEmpty() ? "" : "\n") + tr("%1: loss %2, perplexity %3").arg(start_name(r.start), format_sig(r.loss, 5), format_sig(r.ppl, 5));
        data.evaluated.push_back({double(e.result.size.total_bytes), lo->loss, e.label, tip});
        if (const auto* orig = row_of(e.result, "original")) data.original_loss = orig->loss;
    }
    chart_->setData(data);
}

bool MixedPanel::startEval() {
    if (evalJob_->running()) return false;
    if (!doc_->hasModel() || !source_) {
        fail(tr("Evaluate: open a model with its source weights first"));
        return false;
    }
    if (heldOut().isEmpty() && interactive_) heldBrowse_->click();
    if (heldOut().isEmpty()) {
        fail(tr("Evaluate: choose a held-out text file first"));
        return false;
    }
    if (!QFileInfo::exists(heldOut())) {
        fail(tr("Evaluate: the held-out file %1 does not exist").arg(heldOut()));
        return false;
    }
    QSettings().setValue("mixed/held_out", heldOut());
    loftq::EvalPlanOptions o;
    o.model = doc_->modelPath().toStdString();
    o.data = heldOut().toStdString();
    o.plan = doc_->plan();
    o.max_examples = evalExamples_->value();
    o.threads = threads_;
    const QString label = tr("plan %1").arg(evals_.size() + 1);
    evalProgress_->setValue(0);
    evalProgress_->setFormat(tr("original"));
    const int gen = modelGen_;
    const bool started = evalJob_->start([this, o = std::move(o), label, gen](const loftq::CancelToken& token) {
        JobThread* job = evalJob_;
        auto r = loftq::run_eval_plan(o, [this, job](const std::string& row, double f) {
            job->post([this, row, f] {
                evalProgress_->setValue(int(f * 1000));
                if (!row.empty()) evalProgress_->setFormat(start_name(row));
            });
        }, token);
        job->post([this, r, label, gen] {
            if (gen != modelGen_) return;   // the model changed meanwhile
            evals_.push_back({label, r});
            table_->setRowCount(0);
            for (const auto& row : r.rows) {
                const int i = table_->rowCount();
                table_->insertRow(i);
                const QStringList cells = {start_name(row.start), QString::number(row.loss, 'f', 4), QString::number(row.ppl, 'f', 3),
                                           QString::number(row.tokens)};
                for (int c = 0; c < cells.size(); ++c) {
                    auto* item = new QTableWidgetItem(cells[c]);
                    if (c > 0) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
                    table_->setItem(i, c, item);
                }
            }
            evalCaption_->setVisible(true);
            evalCaption_->setText(tr("%1: %2, %3 bits/param, held-out %4")
                                      .arg(label, format_bytes_decimal(r.size.total_bytes))
                                      .arg(r.size.bits_per_param(), 0, 'f', 3)
                                      .arg(QFileInfo(heldOut()).fileName()));
            updateChart();
        });
    });
    if (!started) return false;
    emit message(tr("evaluation of the grid's plan on %1 started").arg(QFileInfo(heldOut()).fileName()), false);
    updateEnabled();
    return true;
}

void MixedPanel::cancelEval() {
    if (evalJob_->running()) evalJob_->cancel();
}

void MixedPanel::onEvalEnded(bool ok, const QString& why) {
    evalProgress_->setValue(ok ? 1000 : 0);
    evalProgress_->setFormat(ok ? tr("done") : QString());
    if (ok && !evals_.empty()) {
        const auto& r = evals_.back().result;
        QString line;
        for (const auto& row : r.rows) line += QStringLiteral(", %1 %2").arg(start_name(row.start), format_sig(row.loss, 5));
        emit message(tr("evaluated %1: held-out loss%2").arg(evals_.back().label, line), false);
    } else if (!ok) {
        emit message(why.startsWith(tr("evaluation")) ? why : tr("evaluation failed: %1").arg(why), why != tr("evaluation cancelled"));
    }
    updateEnabled();
    emit evalFinished(ok);
}

void MixedPanel::onModelChanged() {
    ++modelGen_;
    calib_.reset();   // statistics are of the model's weights: collect them again for this one
    calibFor_.reset();
    sweepJob_->cancel();
    evalJob_->cancel();
    sweep_.reset();
    budgetAlloc_.reset();
    evals_.clear();
    appliedPlan_.clear();
    table_->setRowCount(0);
    evalCaption_->clear();
    evalCaption_->setVisible(false);
    sweepStatus_->clear();
    budgetLabel_->setText(doc_->hasModel() ? tr("Sweep to see the least-damage plan for each budget") : QString());
    chart_->setMarker(NAN);
    updateChart();
    updateEnabled();
}

void MixedPanel::updateEnabled() {
    const bool model = doc_->hasModel() && source_;
    const bool sweeping = sweepJob_->running(), evaluating = evalJob_->running();
    sweepButton_->setEnabled(model && !sweeping);
    cancelButton_->setEnabled(sweeping);
    sweepProgress_->setVisible(sweeping);
    for (QWidget* w : std::initializer_list<QWidget*>{quants_, ranks_, keep_, calibFile_, calibBrowse_, calibTokens_})
        w->setEnabled(!sweeping);
    slider_->setEnabled(sweep_ != nullptr);
    applyButton_->setEnabled(sweep_ && budgetAlloc_ && budgetAllocFor_ == budget() && model);
    evalButton_->setEnabled(model && !evaluating);
    evalCancel_->setEnabled(evaluating);
    evalProgress_->setVisible(evaluating);
    if (!source_ && doc_->hasModel()) sweepStatus_->setText(tr("A packed export is open: open its source checkpoint to sweep"));
}

// ---- the headless front renderer -----------------------------------------------------------

FrontFile pareto_from_front_file(const QString& path) {
    const std::string p = path.toStdString();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(loftq::read_text_file(p));
    } catch (const nlohmann::json::exception& e) {
        throw loftq::Error(p, "", std::string("not JSON: ") + e.what());
    }
    if (!j.is_object() || j.value("format", "") != "loftq-front")
        throw loftq::Error(p, "", "not a loftq-front file (write one with `loftq plan auto ... --front FILE.json`)");
    FrontFile f;
    try {
        f.data.params = j.at("params").get<double>();
        f.data.metric = QString::fromStdString(j.value("metric", "weight error"));
        for (const auto& e : j.at("front"))
            f.data.front.push_back({e.at("bytes").get<double>(), e.at("damage").get<double>(), QString(), e.value("optimal", true)});
        for (const auto& e : j.value("uniform", nlohmann::json::array()))
            f.data.uniform.push_back(
                {e.at("bytes").get<double>(), e.at("damage").get<double>(), QString::fromStdString(e.at("label").get<std::string>())});
        if (j.contains("chosen"))
            f.data.chosen = ParetoPoint{j["chosen"].at("bytes").get<double>(), j["chosen"].at("damage").get<double>(),
                                        MixedPanel::tr("chosen plan"), true};
        if (j.contains("budget_bytes")) f.budget_bytes = j["budget_bytes"].get<double>();
    } catch (const nlohmann::json::exception& e) {
        throw loftq::Error(p, "", std::string("bad loftq-front file: ") + e.what());
    }
    if (f.data.params <= 0) throw loftq::Error(p, "", "bad loftq-front file: params must be positive");
    if (f.data.chosen && std::isfinite(f.budget_bytes))
        f.data.chosen->label = MixedPanel::tr("chosen for %1").arg(format_bytes_decimal(uint64_t(f.budget_bytes)));
    return f;
}

bool render_front_png(const QString& front_json, const QString& png, const QSize& size, QString* error) {
    try {
        const FrontFile f = pareto_from_front_file(front_json);
        ParetoChart chart;
        chart.setData(f.data);
        if (std::isfinite(f.budget_bytes)) chart.setMarker(f.budget_bytes);
        chart.replotNow();
        return chart.save(png, size.width(), size.height(), error);
    } catch (const std::exception& e) {
        if (error) *error = QString::fromStdString(e.what());
        return false;
    }
}

}  // namespace studio
