// run_results.cpp: see run_results.h.
#include "run_results.h"

#include <algorithm>

namespace studio {

namespace {
// The engine's "no output error" is -1; the views' is NaN.
double out_value(double v) { return v >= 0 ? v : NAN; }
}  // namespace

RunResults::RunResults(QObject* parent) : QObject(parent) {}

void RunResults::clear() {
    weights_.clear();
    run_index_.clear();
    replaced_.clear();
    done_ = 0;
    relayout();   // the model's grid, empty
    fraction_ = 0;
    eta_ = -1;
    elapsed_ = 0;
    state_ = State::Empty;
    message_.clear();
    emit reset();
    emit stateChanged();
    if (has_output_) {
        has_output_ = false;
        emit outputErrorsChanged(false);
    }
}

void RunResults::noteOutput(bool any) {
    if (!any || has_output_) return;
    has_output_ = true;
    emit outputErrorsChanged(true);
}

void RunResults::start(const loftq::ResolvedPlan& plan, Mode mode) {
    if (mode == Mode::Replace) {
        clear();
    } else {
        replaced_.clear();
        done_ = 0;
        fraction_ = 0;
        eta_ = -1;
        elapsed_ = 0;
        message_.clear();
    }
    run_index_.clear();
    for (const loftq::WeightPlan& p : plan.weights) {
        WeightRun fresh;
        fresh.name = QString::fromStdString(p.name);
        fresh.module = QString::fromStdString(p.module);
        fresh.layer = p.layer;
        fresh.steps_planned = p.s.iters;
        fresh.settings = p.s;
        int at = indexOf(fresh.name);
        if (at >= 0) {
            replaced_.insert(at, weights_[at]);
            weights_[at] = fresh;
        } else {
            at = int(weights_.size());
            weights_.push_back(fresh);
        }
        markStale(weights_[at]);
        run_index_.push_back(at);
    }
    relayout();
    state_ = State::Running;
    emit reset();
    emit stateChanged();
}

void RunResults::relayout() {
    // The model's grid first (setModelLayout), then columns in first-seen order over the weights
    // (earlier runs first); rows = layers.
    modules_ = model_modules_;
    layers_ = model_layers_;
    for (WeightRun& w : weights_) {
        w.column = -1;
        if (w.layer < 0) continue;
        int c = int(modules_.indexOf(w.module));
        if (c < 0) {
            c = int(modules_.size());
            modules_.push_back(w.module);
        }
        w.column = c;
        layers_ = std::max(layers_, w.layer + 1);
    }
    cell_weight_.fill(-1, qsizetype(layers_) * modules_.size());
    for (int i = 0; i < weights_.size(); ++i)
        if (weights_[i].layer >= 0) cell_weight_[weights_[i].layer * modules_.size() + weights_[i].column] = i;
}

bool RunResults::markStale(WeightRun& w) const {
    if (!current_) return false;
    QString reason;
    const auto it = current_->constFind(w.name);
    if (it == current_->constEnd())
        reason = tr("the plan no longer quantizes this weight");
    else if (!(w.settings == *it))
        reason = tr("computed with %1; the plan now says %2")
                     .arg(QString::fromStdString(loftq::settings_summary(w.settings)), QString::fromStdString(loftq::settings_summary(*it)));
    const bool stale = !reason.isEmpty();
    const bool changed = stale != w.stale || reason != w.staleReason;
    w.stale = stale;
    w.staleReason = reason;
    return changed;
}

void RunResults::setPlan(const loftq::ResolvedPlan& current) {
    current_.emplace();
    for (const loftq::WeightPlan& p : current.weights) current_->insert(QString::fromStdString(p.name), p.s);
    bool any = false;
    for (WeightRun& w : weights_) any |= markStale(w);
    if (any) emit staleChanged();
}

void RunResults::setModelLayout(int layers, const QStringList& modules) {
    model_layers_ = std::max(0, layers);
    model_modules_ = modules;
    relayout();
    emit reset();
}

int RunResults::staleCount() const {
    return int(std::count_if(weights_.begin(), weights_.end(), [](const WeightRun& w) { return w.stale; }));
}

int RunResults::slot(int run_weight) const {
    return run_weight >= 0 && run_weight < run_index_.size() ? run_index_[run_weight] : -1;
}

int RunResults::indexOf(const QString& name) const {
    for (int i = 0; i < weights_.size(); ++i)
        if (weights_[i].name == name) return i;
    return -1;
}

int RunResults::weightAt(int layer, int column) const {
    if (layer < 0 || layer >= layers_ || column < 0 || column >= modules_.size()) return -1;
    return cell_weight_[layer * modules_.size() + column];
}

void RunResults::apply(const loftq::JobEvent& e) {
    if (e.kind != loftq::EventKind::Message && e.kind != loftq::EventKind::Writing) {
        fraction_ = e.fraction;
        eta_ = e.eta;
        elapsed_ = e.elapsed;
        done_ = e.weights_done;
        emit progressChanged(fraction_, eta_);
    }
    const int at = slot(e.weight);
    if (at < 0) return;
    WeightRun& w = weights_[at];
    switch (e.kind) {
    case loftq::EventKind::WeightStarted:
        w.started = true;
        break;
    case loftq::EventKind::StepDone:
        w.baseline = e.baseline;
        w.out_baseline = out_value(e.out_baseline);
        if (e.step >= 1) {
            if (w.errors.size() < e.step) w.errors.resize(e.step, NAN);
            w.errors[e.step - 1] = e.error;
            if (e.out_error >= 0) {
                if (w.out_errors.size() < e.step) w.out_errors.resize(e.step, NAN);
                w.out_errors[e.step - 1] = e.out_error;
            }
        }
        noteOutput(e.out_error >= 0);
        break;
    case loftq::EventKind::WeightDone:
        w.baseline = e.baseline;
        w.final_error = e.error;
        w.out_baseline = out_value(e.out_baseline);
        w.out_final = out_value(e.out_error);
        noteOutput(e.out_error >= 0);
        w.seconds = e.seconds;
        w.done = true;
        break;
    default:
        return;
    }
    emit weightChanged(at);
}

void RunResults::finish(const loftq::QuantizeResult& r) {
    for (size_t i = 0; i < r.weights.size(); ++i) {
        const int at = slot(int(i));
        if (at < 0) break;
        const loftq::WeightResult& src = r.weights[i];
        WeightRun& w = weights_[at];
        w.baseline = src.baseline;
        w.final_error = src.final_error;
        w.out_baseline = out_value(src.out_baseline);
        w.out_final = out_value(src.out_final);
        noteOutput(src.out_final >= 0);
        w.seconds = src.seconds;
        w.errors.clear();
        w.out_errors.clear();
        for (const auto& s : src.steps) {
            w.errors.push_back(s.error);
            if (s.out_error >= 0) w.out_errors.push_back(s.out_error);
        }
        w.started = w.done = true;
        emit weightChanged(at);
    }
    replaced_.clear();
    fraction_ = 1.0;
    eta_ = 0;
    elapsed_ = r.seconds;
    done_ = int(r.weights.size());
    state_ = State::Finished;
    emit progressChanged(fraction_, eta_);
    emit stateChanged();
}

void RunResults::fail(State s, const QString& message) {
    state_ = s;
    message_ = message;
    // The weights this run did not finish get their earlier results back (a cancelled re-run
    // loses nothing); those it finished keep the new ones.
    bool stale_changed = false;
    for (auto it = replaced_.constBegin(); it != replaced_.constEnd(); ++it) {
        if (weights_[it.key()].done) continue;
        weights_[it.key()] = it.value();
        stale_changed |= markStale(weights_[it.key()]);
        emit weightChanged(it.key());
    }
    replaced_.clear();
    if (stale_changed) emit staleChanged();
    emit stateChanged();
}

}  // namespace studio
