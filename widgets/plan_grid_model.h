// plan_grid_model.h: the plan as a table for the grid view: one row per decoder layer, one
// column per module kind (PlanDocument's grid geometry), one weight per cell. It reads the
// document's resolved plan (the engine's resolution; nothing is computed here) and, when a run
// exists, the run's final error per weight, looked up by tensor name because the run's plan may
// differ from the document's current one.
//
// Refresh: reset on PlanDocument::modelChanged, dataChanged over the whole table on planChanged
// (a plan edit can change any cell through rules), and a coalesced dataChanged (one per event-loop
// pass) for run updates, which arrive once per alternating step.
// Leaves out: painting (plan_grid_delegate.h), selection and edits (plan_grid_view.h).
#pragma once
#include <QAbstractTableModel>
#include <QHash>
#include <QPointer>
#include <vector>

namespace studio {

class PlanDocument;
class RunResults;

class PlanGridModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Role {
        QuantRole = Qt::UserRole + 1,   // int(QuantKind), kQuantKeep (-1) or kQuantEmpty (-2)
        RankRole,                       // int r; invalid QVariant for keep/empty
        ItersRole,                      // int T; invalid for keep/empty
        BlockRole,                      // int elements per scale block; invalid for keep/empty
        ErrorRole,                      // double: final relative error of the run, NaN if none
        BaselineRole,                   // double: QLoRA error of the run, NaN if none
        HighlightRole,                  // bool: the rule preview touches this cell's tensor
        OverrideRole,                   // bool: the plan has a per-tensor override for this cell
        TensorRole,                     // int: tensor index into PlanDocument::tensors(), -1 none
        StaleRole,                      // bool: the cell's result was computed with other settings
    };

    PlanGridModel(PlanDocument* doc, RunResults* results /* may be null */, QObject* parent = nullptr);

    // Rule preview: one flag per tensor of the document (PlanDocument::tensors()); empty = none.
    void setHighlight(const std::vector<bool>& per_tensor);
    const std::vector<bool>& highlight() const { return highlight_; }
    // Shows another run's results (or none); the model does not own it.
    void setResults(RunResults* results);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;

    // Short column labels: the shortest dotted suffix that is unique among the columns, with a
    // "_proj" ending dropped ("q_proj" -> "q", "mlp.c_proj" stays "mlp.c_proj" beside
    // "attn.c_proj"). Public for the overview and tests.
    static QStringList shortColumnNames(const QStringList& modules);

private:
    void onModelChanged();
    void rebuildNames();   // column labels, name -> cell map, run index
    void onPlanChanged();
    void rebuildRunIndex();
    void scheduleRunRefresh();
    int runWeightAt(int layer, int column) const;
    QString cellToolTip(int layer, int column) const;

    PlanDocument* doc_;
    QPointer<RunResults> results_;
    QStringList short_names_;
    std::vector<bool> highlight_;
    QHash<QString, int> cell_of_name_;   // tensor name -> layer * columns + column
    std::vector<int> run_weight_;        // cell -> RunResults weight index, -1 none
    bool refresh_pending_ = false;
    QList<QMetaObject::Connection> run_conns_;
};

}  // namespace studio
