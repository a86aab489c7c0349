// plan_document.cpp: see plan_document.h. Undo keeps whole-plan snapshots: a plan is a few
// kilobytes of settings even for a 7B model (at most one override per weight), and a snapshot
// makes undo of any edit exact.
#include "plan_document.h"

#include <QUndoCommand>

#include <memory>

namespace studio {

// Each side keeps its resolution once known (the document's before the edit; the after side's
// from replacePlan's caller or the first redo), so undo and redo never resolve again: resolving a
// big plan on a big model takes long enough to stall the window.
class PlanEditCommand : public QUndoCommand {
public:
    PlanEditCommand(PlanDocument* doc, loftq::Plan after, const QString& text,
                    std::shared_ptr<const loftq::ResolvedPlan> after_resolved = nullptr)
        : QUndoCommand(text), doc_(doc), before_(doc->plan_), after_(std::move(after)),
          before_resolved_(std::make_shared<const loftq::ResolvedPlan>(doc->resolved_)),
          after_resolved_(std::move(after_resolved)) {}
    void undo() override { doc_->setPlanNoUndo(before_, before_resolved_.get()); }
    void redo() override {
        doc_->setPlanNoUndo(after_, after_resolved_.get());
        if (!after_resolved_) after_resolved_ = std::make_shared<const loftq::ResolvedPlan>(doc_->resolved_);
    }

private:
    PlanDocument* doc_;
    loftq::Plan before_, after_;
    std::shared_ptr<const loftq::ResolvedPlan> before_resolved_, after_resolved_;
};

PlanDocument::PlanDocument(QObject* parent) : QObject(parent) {}

void PlanDocument::setModel(const QString& path, std::vector<loftq::TensorMeta> tensors, const loftq::Plan& plan) {
    path_ = path;
    tensors_ = std::move(tensors);
    plan_ = plan;
    undo_.clear();
    rebuildGrid();
    resolve();
    emit modelChanged();
    emit planChanged();
}

void PlanDocument::clear() { setModel(QString(), {}, {}); }

int PlanDocument::weightOfTensor(int tensor) const {
    return tensor >= 0 && size_t(tensor) < weight_of_tensor_.size() ? weight_of_tensor_[size_t(tensor)] : -1;
}

int PlanDocument::tensorAt(int layer, int column) const {
    if (layer < 0 || layer >= layers_ || column < 0 || column >= columns_.size()) return -1;
    return cell_tensor_[size_t(layer) * size_t(columns_.size()) + size_t(column)];
}

int PlanDocument::weightAt(int layer, int column) const { return weightOfTensor(tensorAt(layer, column)); }

QPoint PlanDocument::cellOfTensor(int tensor) const {
    return tensor >= 0 && size_t(tensor) < tensor_cell_.size() ? tensor_cell_[size_t(tensor)] : QPoint(-1, -1);
}

std::vector<int> PlanDocument::weightsOfCells(const QList<QPoint>& cells) const {
    std::vector<int> out;
    for (const QPoint& c : cells) {
        int w = weightAt(c.y(), c.x());
        if (w >= 0) out.push_back(w);
    }
    return out;
}

void PlanDocument::editCells(const QList<QPoint>& cells, const loftq::SettingsPatch& patch, const QString& what) {
    if (patch.empty()) return;
    loftq::Plan next = plan_;
    bool any = false;
    for (const QPoint& c : cells) {
        int t = tensorAt(c.y(), c.x());
        if (t < 0) continue;
        loftq::SettingsPatch p = patch;
        // Giving a kept cell a quantizer (or any setting) makes it a target again.
        if (!p.target && weightOfTensor(t) < 0) p.target = true;
        loftq::merge_patch(next.overrides[tensors_[size_t(t)].name], p);
        any = true;
    }
    if (!any) return;
    undo_.push(new PlanEditCommand(this, std::move(next), what));
}

void PlanDocument::setRules(const std::vector<loftq::PlanRule>& rules, const QString& what) {
    loftq::Plan next = plan_;
    next.rules = rules;
    undo_.push(new PlanEditCommand(this, std::move(next), what));
}

void PlanDocument::setDefaults(const loftq::WeightSettings& s, const QString& what) {
    loftq::Plan next = plan_;
    next.defaults = s;
    undo_.push(new PlanEditCommand(this, std::move(next), what));
}

void PlanDocument::replacePlan(const loftq::Plan& p, const QString& what) {
    undo_.push(new PlanEditCommand(this, p, what));
}

void PlanDocument::replacePlan(const loftq::Plan& p, loftq::ResolvedPlan resolved, const QString& what) {
    undo_.push(new PlanEditCommand(this, p, what, std::make_shared<const loftq::ResolvedPlan>(std::move(resolved))));
}

void PlanDocument::setBudgetBytes(uint64_t bytes) {
    if (bytes == budget_) return;
    budget_ = bytes;
    emit budgetChanged();
}

void PlanDocument::setPlanNoUndo(const loftq::Plan& p, const loftq::ResolvedPlan* resolved) {
    plan_ = p;
    resolve(resolved);
    emit planChanged();
}

void PlanDocument::rebuildGrid() {
    layers_ = 0;
    columns_.clear();
    tensor_cell_.assign(tensors_.size(), QPoint(-1, -1));
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const loftq::TensorMeta& t = tensors_[i];
        int layer = loftq::layer_of(t.name);
        if (layer < 0 || t.shape.size() != 2 || !loftq::dtype_is_float_convertible(t.dtype)) continue;
        QString m = QString::fromStdString(loftq::module_of(t.name));
        int col = int(columns_.indexOf(m));
        if (col < 0) {
            col = int(columns_.size());
            columns_.push_back(m);
        }
        layers_ = std::max(layers_, layer + 1);
        tensor_cell_[i] = QPoint(col, layer);
    }
    cell_tensor_.assign(size_t(layers_) * size_t(columns_.size()), -1);
    for (size_t i = 0; i < tensors_.size(); ++i) {
        QPoint c = tensor_cell_[i];
        if (c.x() >= 0) cell_tensor_[size_t(c.y()) * size_t(columns_.size()) + size_t(c.x())] = int(i);
    }
}

void PlanDocument::resolve(const loftq::ResolvedPlan* known) {
    if (known) {
        resolved_ = *known;
    } else {
        resolved_ = loftq::resolve_plan(plan_, tensors_);
        ++resolve_count_;
    }
    size_ = loftq::plan_size(resolved_, tensors_);
    weight_of_tensor_.assign(tensors_.size(), -1);
    for (size_t w = 0; w < resolved_.weights.size(); ++w) weight_of_tensor_[size_t(resolved_.weights[w].tensor)] = int(w);
}

}  // namespace studio
