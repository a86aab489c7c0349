// model_overview.cpp: see model_overview.h.
#include "model_overview.h"

#include <QFormLayout>
#include <QGroupBox>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QVBoxLayout>

#include "plan_document.h"

namespace studio {

TensorTableModel::TensorTableModel(PlanDocument* doc, QObject* parent) : QAbstractTableModel(parent), doc_(doc) {
    connect(doc_, &PlanDocument::modelChanged, this, [this] {
        beginResetModel();
        endResetModel();
    });
    connect(doc_, &PlanDocument::planChanged, this, [this] {
        if (rowCount()) emit dataChanged(index(0, Target), index(rowCount() - 1, Settings));
    });
}

int TensorTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(doc_->tensors().size()); }
int TensorTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant TensorTableModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return {};
    const loftq::TensorMeta& t = doc_->tensors()[size_t(index.row())];
    const int w = doc_->weightOfTensor(index.row());
    qulonglong params = 1;
    for (int64_t d : t.shape) params *= qulonglong(d);
    if (role == Qt::TextAlignmentRole)
        return index.column() == Params ? QVariant(Qt::AlignRight | Qt::AlignVCenter) : QVariant();
    if (role == SortRole && index.column() == Params) return params;
    if (role != Qt::DisplayRole && role != SortRole && role != Qt::ToolTipRole) return {};
    switch (index.column()) {
    case Name: return QString::fromStdString(t.name);
    case Shape: {
        QStringList s;
        for (int64_t d : t.shape) s << QString::number(d);
        return s.join(QString::fromUtf8(" × "));
    }
    case DType: return QString::fromLatin1(loftq::dtype_name(t.dtype));
    case Params: return QLocale().toString(params);
    case Target: return w >= 0 ? tr("yes") : QString();
    case Settings:
        return w >= 0 ? QString::fromStdString(loftq::settings_summary(doc_->resolved().weights[size_t(w)].s))
                      : tr("kept (%1)").arg(QString::fromLatin1(loftq::dtype_name(t.dtype)));
    default: return {};
    }
}

QVariant TensorTableModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole || section < 0 || section >= ColumnCount) return {};
    static const char* names[] = {"Tensor", "Shape", "DType", "Parameters", "Target", "Settings"};
    return tr(names[section]);
}

ModelOverview::ModelOverview(PlanDocument* doc, QWidget* parent) : QWidget(parent), doc_(doc) {
    auto* box = new QGroupBox(tr("Architecture"), this);
    facts_ = new QFormLayout(box);
    facts_->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);

    filter_ = new QLineEdit(this);
    filter_->setPlaceholderText(tr("Filter tensors by name (e.g. mlp, layers.3., q_proj)"));
    filter_->setClearButtonEnabled(true);
    count_ = new QLabel(this);

    model_ = new TensorTableModel(doc_, this);
    proxy_ = new QSortFilterProxyModel(this);
    proxy_->setSourceModel(model_);
    proxy_->setFilterKeyColumn(TensorTableModel::Name);
    proxy_->setFilterCaseSensitivity(Qt::CaseInsensitive);
    proxy_->setSortRole(TensorTableModel::SortRole);
    view_ = new QTableView(this);
    view_->setModel(proxy_);
    view_->setSortingEnabled(true);
    view_->sortByColumn(-1, Qt::AscendingOrder);   // file order until the user sorts
    view_->setSelectionBehavior(QAbstractItemView::SelectRows);
    view_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    view_->setWordWrap(false);
    view_->setTextElideMode(Qt::ElideMiddle);   // tensor names differ in the middle (layer index)
    view_->verticalHeader()->hide();
    view_->verticalHeader()->setDefaultSectionSize(fontMetrics().height() * 3 / 2);
    view_->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
    view_->horizontalHeader()->setStretchLastSection(true);
    const int ch = fontMetrics().averageCharWidth();
    view_->setColumnWidth(TensorTableModel::Name, ch * 40);
    view_->setColumnWidth(TensorTableModel::Shape, ch * 15);  // "11008 × 4096" whole
    view_->setColumnWidth(TensorTableModel::DType, ch * 7);
    view_->setColumnWidth(TensorTableModel::Params, ch * 11);
    view_->setColumnWidth(TensorTableModel::Target, ch * 8);
    // Never narrower than the header text plus room for the sort arrow.
    const QFontMetrics hfm(view_->horizontalHeader()->font());
    for (int c = 0; c < TensorTableModel::ColumnCount; ++c)
        view_->setColumnWidth(c, std::max(view_->columnWidth(c), hfm.horizontalAdvance(model_->headerData(c, Qt::Horizontal).toString()) + ch * 3));

    auto* filterRow = new QHBoxLayout;
    filterRow->addWidget(filter_, 1);
    filterRow->addWidget(count_);
    auto* lay = new QVBoxLayout(this);
    lay->addWidget(box);
    lay->addLayout(filterRow);
    lay->addWidget(view_, 1);

    connect(filter_, &QLineEdit::textChanged, this, [this](const QString& t) {
        proxy_->setFilterFixedString(t);
        updateCount();
    });
    connect(doc_, &PlanDocument::modelChanged, this, &ModelOverview::updateCount);
    connect(doc_, &PlanDocument::planChanged, this, &ModelOverview::updateCount);
    setFacts({});
    updateCount();
}

void ModelOverview::setFacts(const QList<QPair<QString, QString>>& facts) {
    while (facts_->rowCount() > 0) facts_->removeRow(0);
    if (facts.isEmpty()) {
        facts_->addRow(new QLabel(tr("No model open"), this));
        return;
    }
    for (const auto& [k, v] : facts) {
        // Paths wrap at their slashes (a zero-width space after each) instead of widening the dock.
        QString shown = v;
        shown.replace('/', QStringLiteral("/\u200B"));
        auto* value = new QLabel(shown, this);
        value->setWordWrap(true);
        value->setToolTip(v);
        value->setTextInteractionFlags(Qt::TextSelectableByMouse);
        facts_->addRow(k + ":", value);
    }
}

void ModelOverview::updateCount() {
    int shown = proxy_->rowCount(), all = model_->rowCount();
    int targets = int(doc_->resolved().weights.size());
    count_->setText(shown == all ? tr("%1 tensors, %2 quantized").arg(all).arg(targets)
                                 : tr("%1 of %2 tensors").arg(shown).arg(all));
}

}  // namespace studio
