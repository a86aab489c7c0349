// rules_panel.h: edits the plan's ordered rules: a table (RulesModel + RulesDelegate) with Add,
// Remove, Up and Down. Every committed change is one PlanDocument::setRules undo step; the
// table reloads from the document on planChanged (undo, redo, a loaded plan) and keeps the
// current row. A refused edit (bad regex, bad layer range, ...) shows its reason under the table
// and leaves the document unchanged.
//
// Preview: the current rule's matches (loftq::rule_matches: its pattern and layer range,
// whatever later rules or overrides do) as "matches N tensors (M on the grid)" and as
// previewChanged(per-tensor flags), which the main window forwards to
// PlanGridModel::setHighlight; no current rule = an empty vector.
// Leaves out: plan defaults and overrides (the grid edits those).
#pragma once
#include <QWidget>
#include <vector>

class QLabel;
class QPushButton;
class QTableView;

namespace studio {

class PlanDocument;
class RulesModel;

class RulesPanel : public QWidget {
    Q_OBJECT
public:
    explicit RulesPanel(PlanDocument* doc, QWidget* parent = nullptr);

    RulesModel* rulesModel() const { return model_; }
    QTableView* table() const { return table_; }
    QLabel* previewLabel() const { return preview_; }
    QLabel* messageLabel() const { return message_; }
    int currentRule() const;          // -1 when none
    void setCurrentRule(int row);

    // The buttons' actions, one undo step each.
    void addRule();                   // after the current rule (or at the end)
    void removeRule();                // the current rule
    void moveRule(int delta);         // -1 up, +1 down

signals:
    void previewChanged(const std::vector<bool>& per_tensor);

private:
    void reloadFromDoc();
    void commit(const QString& what);
    void updatePreview();
    void updateButtons();
    void showMessage(const QString& text, bool error);

    PlanDocument* doc_;
    RulesModel* model_;
    QTableView* table_;
    QPushButton *add_, *remove_, *up_, *down_;
    QLabel* preview_;
    QLabel* message_;
};

}  // namespace studio
