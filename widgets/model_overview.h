// model_overview.h: the open model at a glance: architecture facts the app read from the
// checkpoint (setFacts: label/value pairs, shown as a two-column form), and a table of every
// tensor: name, shape, dtype, parameters, whether the plan quantizes it and its resolved settings
// (settings_summary), filtered by a line edit (substring of the name, case-insensitive) and
// sortable (parameters sort as numbers). Refreshes on the document's modelChanged/planChanged.
// Leaves out: reading the checkpoint (the app does) and any numerics beyond counting elements.
#pragma once
#include <QAbstractTableModel>
#include <QList>
#include <QPair>
#include <QWidget>

class QFormLayout;
class QLineEdit;
class QSortFilterProxyModel;
class QTableView;
class QLabel;

namespace studio {

class PlanDocument;

// The tensor table behind ModelOverview (one row per PlanDocument::tensors() entry).
class TensorTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Shape, DType, Params, Target, Settings, ColumnCount };
    static constexpr int SortRole = Qt::UserRole + 1;   // numbers for Params, else the text
    explicit TensorTableModel(PlanDocument* doc, QObject* parent = nullptr);
    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

private:
    PlanDocument* doc_;
};

class ModelOverview : public QWidget {
    Q_OBJECT
public:
    explicit ModelOverview(PlanDocument* doc, QWidget* parent = nullptr);
    // Architecture facts, in order (model_type, layers, hidden, heads, ...); replaces earlier ones.
    void setFacts(const QList<QPair<QString, QString>>& facts);

    QLineEdit* filterEdit() const { return filter_; }
    QSortFilterProxyModel* proxy() const { return proxy_; }
    QTableView* tensorView() const { return view_; }
    TensorTableModel* tensorModel() const { return model_; }

private:
    void updateCount();

    PlanDocument* doc_;
    QFormLayout* facts_;
    QLineEdit* filter_;
    QLabel* count_;
    TensorTableModel* model_;
    QSortFilterProxyModel* proxy_;
    QTableView* view_;
};

}  // namespace studio
