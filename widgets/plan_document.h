// plan_document.h: the open model's tensor list and the plan being edited, as one QObject the
// views share (grid, rules panel, budget bar, overview). It holds no numerics: resolution and
// sizes come from the engine (`resolve_plan`, `plan_size`), recomputed after every edit; it
// reads no tensor data.
//
// Grid geometry: rows are decoder layers 0..layers()-1, columns the module kinds (engine
// `module_of`, first-seen order) of the 2-D float tensors that sit in a layer. A cell is a
// QPoint(x = column, y = layer). A cell whose tensor is not a target ("keep") still has a tensor;
// a cell with no tensor at all (a model whose layers differ) has tensorAt() == -1.
//
// Edits go through the QUndoStack as one command each; planChanged() follows every edit, undo
// and redo. Grid edits become per-tensor overrides (merged into any override already there), so
// the saved `*.loftq.json` runs in the CLI exactly as drawn.
#pragma once
#include <QObject>
#include <QPoint>
#include <QString>
#include <QStringList>
#include <QUndoStack>
#include <cstdint>
#include <vector>

#include "loftq/budget.h"
#include "loftq/plan.h"

namespace studio {

class PlanDocument : public QObject {
    Q_OBJECT
public:
    explicit PlanDocument(QObject* parent = nullptr);

    // A newly opened model (its tensors, no data) and its starting plan; clears the undo
    // history and marks the document clean. Emits modelChanged() then planChanged().
    void setModel(const QString& path, std::vector<loftq::TensorMeta> tensors, const loftq::Plan& plan = {});
    void clear();
    bool hasModel() const { return !path_.isEmpty(); }
    QString modelPath() const { return path_; }
    const std::vector<loftq::TensorMeta>& tensors() const { return tensors_; }

    const loftq::Plan& plan() const { return plan_; }
    const loftq::ResolvedPlan& resolved() const { return resolved_; }
    const loftq::PlanSize& size() const { return size_; }
    int weightOfTensor(int tensor) const;          // index into resolved().weights, -1 if kept

    // Grid geometry (see the file comment).
    int layers() const { return layers_; }
    const QStringList& columns() const { return columns_; }
    int tensorAt(int layer, int column) const;     // -1 when no tensor there
    int weightAt(int layer, int column) const;     // -1 when no tensor or not a target
    QPoint cellOfTensor(int tensor) const;         // (-1, -1) when the tensor is not on the grid
    // The weights (resolved indices) of a set of cells, skipping kept/empty cells.
    std::vector<int> weightsOfCells(const QList<QPoint>& cells) const;

    // Edits: one undo command each.
    QUndoStack* undoStack() { return &undo_; }
    void editCells(const QList<QPoint>& cells, const loftq::SettingsPatch& patch, const QString& what);
    void setRules(const std::vector<loftq::PlanRule>& rules, const QString& what);
    void setDefaults(const loftq::WeightSettings& s, const QString& what);
    void replacePlan(const loftq::Plan& p, const QString& what);   // e.g. File > Load Plan
    // The same with the plan already resolved on this model's tensors (off the GUI thread: a big
    // plan on a big model takes long to resolve), so that applying it does not resolve again.
    void replacePlan(const loftq::Plan& p, loftq::ResolvedPlan resolved, const QString& what);
    // How many times the document has run resolve_plan (tests: undo, redo and a pre-resolved
    // replacePlan must not).
    int resolveCount() const { return resolve_count_; }

    // Optional memory budget in bytes (0 = none); an app setting, not part of the plan file.
    void setBudgetBytes(uint64_t bytes);
    uint64_t budgetBytes() const { return budget_; }

    bool isModified() const { return !undo_.isClean(); }
    void markSaved() { undo_.setClean(); }

signals:
    void modelChanged();
    void planChanged();
    void budgetChanged();

private:
    friend class PlanEditCommand;
    // Used by the undo commands; `resolved`: the plan's resolution when known (else resolved here).
    void setPlanNoUndo(const loftq::Plan& p, const loftq::ResolvedPlan* resolved = nullptr);
    void rebuildGrid();
    void resolve(const loftq::ResolvedPlan* known = nullptr);

    QString path_;
    std::vector<loftq::TensorMeta> tensors_;
    loftq::Plan plan_;
    loftq::ResolvedPlan resolved_;
    int resolve_count_ = 0;
    loftq::PlanSize size_;
    std::vector<int> weight_of_tensor_;        // tensor index -> resolved weight index or -1
    int layers_ = 0;
    QStringList columns_;
    std::vector<int> cell_tensor_;             // layers_ x columns_, row-major, -1 = empty
    std::vector<QPoint> tensor_cell_;          // tensor index -> cell or (-1,-1)
    QUndoStack undo_;
    uint64_t budget_ = 0;
};

}  // namespace studio
