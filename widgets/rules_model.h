// rules_model.h: the plan's ordered rules as an editable table (a copy of
// loftq::Plan::rules; RulesPanel writes every committed change back to the PlanDocument), plus
// the delegate that edits its cells.
//
// Columns: Pattern (glob or regex text), Regex (checkbox), Layers ("" = all, "3", "0-3", "4-",
// "-7"), Target ("" unchanged, "target" = include a non-default tensor, "keep" = not quantized),
// Quant ("" or nf4 ... int8), Block, Rank, T (each "" when the rule leaves it). EditRole for the
// three numbers is an int, -1 = unset. A "keep" rule carries no quantizer (choosing a quantizer
// on it clears "keep") so that the JSON form stays exact.
//
// Invalid input (empty pattern, a regex std::regex rejects, bad layer syntax or first > last,
// numbers out of the plan format's ranges, a rule that would change nothing) is refused: setData
// returns false, the rule is unchanged and refused(message) says why. Leaves out: preview and
// the document (rules_panel.h).
#pragma once
#include <QAbstractTableModel>
#include <QStyledItemDelegate>
#include <vector>

#include "loftq/plan.h"

namespace studio {

class RulesModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Pattern, Regex, Layers, Target, Quant, Block, Rank, Iters, ColumnCount };

    explicit RulesModel(QObject* parent = nullptr);

    void setRules(const std::vector<loftq::PlanRule>& rules);   // resets the model
    const std::vector<loftq::PlanRule>& rules() const { return rules_; }

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;

    // "" when the rule can go into a plan, else why not (also used by the panel before a commit).
    static QString validate(const loftq::PlanRule& r);
    // Layer range text <-> fields. parseLayers returns false (and sets *error) on bad syntax.
    static QString layersText(const loftq::PlanRule& r);
    static bool parseLayers(const QString& text, std::optional<int>& lo, std::optional<int>& hi, QString* error);
    static bool rulesEqual(const std::vector<loftq::PlanRule>& a, const std::vector<loftq::PlanRule>& b);

signals:
    void ruleEdited(int row);          // a valid change was made to rules()[row]
    void refused(const QString& why);  // an edit was refused; rules() is unchanged

private:
    std::vector<loftq::PlanRule> rules_;
};

// Editors for RulesModel: combo boxes for Target and Quant, spin boxes (with "—" = unset) for
// Block, Rank and T, a line edit for Pattern and Layers (with a placeholder giving the syntax).
class RulesDelegate : public QStyledItemDelegate {
    Q_OBJECT
public:
    using QStyledItemDelegate::QStyledItemDelegate;
    QWidget* createEditor(QWidget* parent, const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    void setEditorData(QWidget* editor, const QModelIndex& index) const override;
    void setModelData(QWidget* editor, QAbstractItemModel* model, const QModelIndex& index) const override;
};

}  // namespace studio
