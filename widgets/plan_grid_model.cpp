// plan_grid_model.cpp: see plan_grid_model.h. Settings come from PlanDocument::resolved(); run
// numbers from RunResults, shown only when that weight is done.
#include "plan_grid_model.h"

#include <QLocale>
#include <QTimer>
#include <cmath>

#include "plan_document.h"
#include "quant_colors.h"
#include "run_results.h"

namespace studio {

PlanGridModel::PlanGridModel(PlanDocument* doc, RunResults* results, QObject* parent)
    : QAbstractTableModel(parent), doc_(doc) {
    connect(doc_, &PlanDocument::modelChanged, this, &PlanGridModel::onModelChanged);
    connect(doc_, &PlanDocument::planChanged, this, &PlanGridModel::onPlanChanged);
    rebuildNames();
    setResults(results);
}

void PlanGridModel::setResults(RunResults* results) {
    for (auto& c : run_conns_) disconnect(c);
    run_conns_.clear();
    results_ = results;
    if (results_) {
        run_conns_ << connect(results_, &RunResults::reset, this, &PlanGridModel::scheduleRunRefresh)
                   << connect(results_, &RunResults::weightChanged, this, &PlanGridModel::scheduleRunRefresh)
                   << connect(results_, &RunResults::stateChanged, this, &PlanGridModel::scheduleRunRefresh)
                   << connect(results_, &RunResults::staleChanged, this, &PlanGridModel::scheduleRunRefresh);
    }
    rebuildRunIndex();
    if (rowCount() && columnCount()) emit dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1));
}

void PlanGridModel::onModelChanged() {
    beginResetModel();
    rebuildNames();
    endResetModel();
}

void PlanGridModel::rebuildNames() {
    short_names_ = shortColumnNames(doc_->columns());
    cell_of_name_.clear();
    const auto& ts = doc_->tensors();
    for (size_t i = 0; i < ts.size(); ++i) {
        QPoint c = doc_->cellOfTensor(int(i));
        if (c.x() >= 0) cell_of_name_.insert(QString::fromStdString(ts[i].name), c.y() * int(doc_->columns().size()) + c.x());
    }
    highlight_.clear();   // a new model: the old preview means nothing
    rebuildRunIndex();
}

void PlanGridModel::onPlanChanged() {
    if (rowCount() && columnCount()) emit dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1));
}

void PlanGridModel::setHighlight(const std::vector<bool>& per_tensor) {
    highlight_ = per_tensor.size() == doc_->tensors().size() ? per_tensor : std::vector<bool>{};
    if (rowCount() && columnCount())
        emit dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1), {HighlightRole});
}

void PlanGridModel::rebuildRunIndex() {
    run_weight_.assign(size_t(doc_->layers()) * size_t(doc_->columns().size()), -1);
    if (!results_) return;
    for (int w = 0; w < results_->count(); ++w) {
        auto it = cell_of_name_.constFind(results_->weight(w).name);
        if (it != cell_of_name_.constEnd() && size_t(*it) < run_weight_.size()) run_weight_[size_t(*it)] = w;
    }
}

void PlanGridModel::scheduleRunRefresh() {
    if (refresh_pending_) return;
    refresh_pending_ = true;
    QTimer::singleShot(0, this, [this] {
        refresh_pending_ = false;
        rebuildRunIndex();
        if (rowCount() && columnCount())
            emit dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1),
                             {ErrorRole, BaselineRole, StaleRole, Qt::ToolTipRole});
    });
}

int PlanGridModel::runWeightAt(int layer, int column) const {
    size_t i = size_t(layer) * size_t(doc_->columns().size()) + size_t(column);
    if (!results_ || i >= run_weight_.size()) return -1;
    int w = run_weight_[i];
    return w >= 0 && w < results_->count() ? w : -1;
}

int PlanGridModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : doc_->layers(); }
int PlanGridModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(doc_->columns().size()); }

Qt::ItemFlags PlanGridModel::flags(const QModelIndex& index) const {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return Qt::NoItemFlags;
    return Qt::ItemIsEnabled | Qt::ItemIsSelectable;
}

QVariant PlanGridModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return {};
    int layer = index.row(), col = index.column();
    int t = doc_->tensorAt(layer, col);
    int w = doc_->weightAt(layer, col);
    const loftq::WeightSettings* s = w >= 0 ? &doc_->resolved().weights[size_t(w)].s : nullptr;
    int code = t < 0 ? kQuantEmpty : s ? int(s->quant) : kQuantKeep;
    switch (role) {
    case Qt::DisplayRole:
        if (s) return QString("%1 r%2 T%3 b%4").arg(quantStyle(code).shortLabel).arg(s->rank).arg(s->iters).arg(s->block);
        return quantStyle(code).shortLabel;
    case Qt::ToolTipRole: return cellToolTip(layer, col);
    case Qt::BackgroundRole: return quantStyle(code).fill;
    case QuantRole: return code;
    case RankRole: return s ? QVariant(s->rank) : QVariant();
    case ItersRole: return s ? QVariant(s->iters) : QVariant();
    case BlockRole: return s ? QVariant(s->block) : QVariant();
    case ErrorRole:
    case BaselineRole: {
        int r = runWeightAt(layer, col);
        if (r < 0 || !results_->weight(r).done) return double(NAN);
        return role == ErrorRole ? results_->weight(r).final_error : results_->weight(r).baseline;
    }
    case StaleRole: {
        const int r = runWeightAt(layer, col);
        return r >= 0 && results_->weight(r).done && results_->weight(r).stale;
    }
    case HighlightRole: return t >= 0 && size_t(t) < highlight_.size() && highlight_[size_t(t)];
    case OverrideRole:
        return t >= 0 && doc_->plan().overrides.count(doc_->tensors()[size_t(t)].name) > 0;
    case TensorRole: return t;
    default: return {};
    }
}

QString PlanGridModel::cellToolTip(int layer, int col) const {
    int t = doc_->tensorAt(layer, col);
    if (t < 0) return tr("Layer %1 has no %2 weight").arg(layer).arg(doc_->columns().value(col));
    const loftq::TensorMeta& m = doc_->tensors()[size_t(t)];
    QStringList shape;
    for (int64_t d : m.shape) shape << QString::number(d);
    QString tip = QString("<b>%1</b><br>%2 %3").arg(QString::fromStdString(m.name).toHtmlEscaped(), shape.join(QString::fromUtf8(" × ")),
                                                   QString::fromLatin1(loftq::dtype_name(m.dtype)));
    int w = doc_->weightOfTensor(t);
    if (w >= 0)
        tip += "<br>" + QString::fromStdString(loftq::settings_summary(doc_->resolved().weights[size_t(w)].s)).toHtmlEscaped();
    else
        tip += "<br>" + tr("kept in %1 (not quantized)").arg(QString::fromLatin1(loftq::dtype_name(m.dtype)));
    if (doc_->plan().overrides.count(m.name)) tip += "<br><i>" + tr("per-weight override") + "</i>";
    int r = runWeightAt(layer, col);
    if (r >= 0 && results_->weight(r).done) {
        const WeightRun& wr = results_->weight(r);
        if (wr.stale) tip += "<br><b>" + tr("stale result (run again)") + "</b>: " + wr.staleReason.toHtmlEscaped();
        tip += "<br>" + tr("final error %1<br>QLoRA baseline %2<br>improvement %3")
                            .arg(QString::number(wr.final_error, 'g', 5), QString::number(wr.baseline, 'g', 5),
                                 QString::number(wr.improvement(), 'g', 5));
    }
    return tip;
}

QVariant PlanGridModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o == Qt::Vertical) {
        if (section < 0 || section >= rowCount()) return {};
        if (role == Qt::DisplayRole) return QString("L%1").arg(section);
        if (role == Qt::ToolTipRole) return tr("Decoder layer %1 (click to select the row)").arg(section);
        return {};
    }
    if (section < 0 || section >= columnCount()) return {};
    if (role == Qt::DisplayRole) return short_names_.value(section);
    if (role == Qt::ToolTipRole) return tr("%1 (click to select the column)").arg(doc_->columns().value(section));
    return {};
}

QStringList PlanGridModel::shortColumnNames(const QStringList& modules) {
    QList<QStringList> parts;
    for (const QString& m : modules) parts << m.split('.');
    auto suffix = [&](int i, int n) { return parts[i].mid(std::max<qsizetype>(0, parts[i].size() - n)).join('.'); };
    QStringList out;
    for (int i = 0; i < modules.size(); ++i) {
        int n = 1;
        for (; n < parts[i].size(); ++n) {
            bool unique = true;
            for (int j = 0; j < modules.size() && unique; ++j)
                if (j != i && suffix(j, n) == suffix(i, n)) unique = false;
            if (unique) break;
        }
        QString s = suffix(i, n);
        if (s.endsWith("_proj") && s.size() > 5 && !s.endsWith("c_proj")) s.chop(5);
        out << s;
    }
    return out;
}

}  // namespace studio
