// run_results.cpp: see run_results.h.
#include "run_results.h"

namespace studio {

namespace {
// The engine's "no output error" is -1; the views' is NaN.
double out_value(double v) { return v >= 0 ? v : NAN; }
}  // namespace

RunResults::RunResults(QObject* parent) : QObject(parent) {}

void RunResults::clear() {
    weights_.clear();
    modules_.clear();
    cell_weight_.clear();
    layers_ = done_ = 0;
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

void RunResults::start(const loftq::ResolvedPlan& plan) {
    clear();
    weights_.resize(qsizetype(plan.weights.size()));
    for (size_t i = 0; i < plan.weights.size(); ++i) {
        const loftq::WeightPlan& p = plan.weights[i];
        WeightRun& w = weights_[qsizetype(i)];
        w.name = QString::fromStdString(p.name);
        w.module = QString::fromStdString(p.module);
        w.layer = p.layer;
        w.steps_planned = p.s.iters;
        if (p.layer >= 0) {
            int c = int(modules_.indexOf(w.module));
            if (c < 0) {
                c = int(modules_.size());
                modules_.push_back(w.module);
            }
            w.column = c;
            layers_ = std::max(layers_, p.layer + 1);
        }
    }
    cell_weight_.fill(-1, qsizetype(layers_) * modules_.size());
    for (int i = 0; i < weights_.size(); ++i)
        if (weights_[i].layer >= 0) cell_weight_[weights_[i].layer * modules_.size() + weights_[i].column] = i;
    state_ = State::Running;
    emit reset();
    emit stateChanged();
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
    if (e.weight < 0 || e.weight >= weights_.size()) return;
    WeightRun& w = weights_[e.weight];
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
    emit weightChanged(e.weight);
}

void RunResults::finish(const loftq::QuantizeResult& r) {
    for (size_t i = 0; i < r.weights.size() && qsizetype(i) < weights_.size(); ++i) {
        const loftq::WeightResult& src = r.weights[i];
        WeightRun& w = weights_[qsizetype(i)];
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
        emit weightChanged(int(i));
    }
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
    emit stateChanged();
}

}  // namespace studio
