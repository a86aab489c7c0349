// mixed.cpp: see studio/mixed.h. The panel's state: sweep, budget, allocation and plan changes;
// its widgets, chart and evaluation are in mixed_view.cpp.
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
                                .arg(QString::fromLatin1(loftq::kSweepModeNames.name(sw.mode)),
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

}  // namespace studio

