// rules_model.cpp: see rules_model.h. Ranges are the plan format's (docs/PLAN-FORMAT.md):
// block 1..2^20, rank 0..65536, T 0..100, layers 0..2^20.
#include "rules_model.h"

#include <QComboBox>
#include <QLineEdit>
#include <QRegularExpression>
#include <QSpinBox>

#include "core/error.h"
#include "quant_colors.h"

namespace studio {

namespace {
constexpr int kMaxBlock = 1 << 20, kMaxRank = 65536, kMaxIters = 100, kMaxLayer = 1 << 20;

bool patchEqual(const loftq::SettingsPatch& a, const loftq::SettingsPatch& b) {
    return a.target == b.target && a.quant == b.quant && a.block == b.block && a.rank == b.rank && a.iters == b.iters &&
           a.svd == b.svd;
}
// A layer bound at or past kMaxLayer is "open" (plan_to_json writes an open end as 2^20).
std::optional<int> openIfHuge(std::optional<int> v) { return v && *v >= kMaxLayer ? std::nullopt : v; }
}  // namespace

RulesModel::RulesModel(QObject* parent) : QAbstractTableModel(parent) {}

void RulesModel::setRules(const std::vector<loftq::PlanRule>& rules) {
    beginResetModel();
    rules_ = rules;
    endResetModel();
}

bool RulesModel::rulesEqual(const std::vector<loftq::PlanRule>& a, const std::vector<loftq::PlanRule>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].pattern != b[i].pattern || a[i].regex != b[i].regex || a[i].layer_min != b[i].layer_min ||
            a[i].layer_max != b[i].layer_max || !patchEqual(a[i].set, b[i].set))
            return false;
    return true;
}

int RulesModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(rules_.size()); }
int RulesModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

Qt::ItemFlags RulesModel::flags(const QModelIndex& index) const {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
    return index.column() == Regex ? f | Qt::ItemIsUserCheckable : f | Qt::ItemIsEditable;
}

QString RulesModel::layersText(const loftq::PlanRule& r) {
    if (!r.layer_min && !r.layer_max) return {};
    int lo = r.layer_min.value_or(0);
    std::optional<int> hi = openIfHuge(r.layer_max);
    if (hi && *hi == lo) return QString::number(lo);
    return QString::number(lo) + "-" + (hi ? QString::number(*hi) : QString());
}

bool RulesModel::parseLayers(const QString& text, std::optional<int>& lo, std::optional<int>& hi, QString* error) {
    static const QRegularExpression re(R"(^\s*(\d*)\s*(-?)\s*(\d*)\s*$)");
    lo.reset();
    hi.reset();
    QString t = text.trimmed();
    if (t.isEmpty()) return true;
    auto m = re.match(t);
    bool dash = m.hasMatch() && !m.captured(2).isEmpty();
    if (!m.hasMatch() || (m.captured(1).isEmpty() && m.captured(3).isEmpty()) || (!dash && !m.captured(3).isEmpty() && !m.captured(1).isEmpty())) {
        if (error) *error = QObject::tr("layers '%1': expected a layer (3), a range (0-3), or an open range (4- or -7)").arg(text);
        return false;
    }
    bool ok1 = true, ok3 = true;
    qlonglong a = m.captured(1).isEmpty() ? -1 : m.captured(1).toLongLong(&ok1);
    qlonglong b = m.captured(3).isEmpty() ? -1 : m.captured(3).toLongLong(&ok3);
    if (!ok1 || !ok3 || a > kMaxLayer || b > kMaxLayer) {
        if (error) *error = QObject::tr("layers '%1': layer numbers go up to %2").arg(text).arg(kMaxLayer);
        return false;
    }
    if (!dash) {
        lo = hi = int(a);
        return true;
    }
    lo = a >= 0 ? int(a) : 0;
    if (b >= 0) hi = int(b);
    if (hi && *lo > *hi) {
        if (error) *error = QObject::tr("layers '%1': the first layer is after the last").arg(text);
        lo.reset();
        hi.reset();
        return false;
    }
    return true;
}

QString RulesModel::validate(const loftq::PlanRule& r) {
    if (r.pattern.empty()) return tr("the pattern is empty");
    if (r.regex) {
        try {
            loftq::rule_matches(r, {});   // compiles the regex as the engine does
        } catch (const loftq::Error& e) {
            return QString::fromStdString(e.what()) + tr(" (for a glob with '*' wildcards, untick Regex)");
        }
    }
    if (r.layer_min && r.layer_max && *r.layer_min > *r.layer_max) return tr("the first layer is after the last");
    const auto& s = r.set;
    if (s.block && (*s.block < 1 || *s.block > kMaxBlock)) return tr("block must be 1..%1").arg(kMaxBlock);
    if (s.rank && (*s.rank < 0 || *s.rank > kMaxRank)) return tr("rank must be 0..%1").arg(kMaxRank);
    if (s.iters && (*s.iters < 0 || *s.iters > kMaxIters)) return tr("T must be 0..%1").arg(kMaxIters);
    if (s.empty()) return tr("the rule would change nothing: give it a quantizer, block, rank, T, target or keep");
    return {};
}

QVariant RulesModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return {};
    const loftq::PlanRule& r = rules_[size_t(index.row())];
    const auto& s = r.set;
    auto num = [&](const std::optional<int>& v) -> QVariant {
        if (role == Qt::EditRole) return v ? *v : -1;
        return v ? QString::number(*v) : QString();
    };
    if (index.column() == Regex) {
        if (role == Qt::CheckStateRole) return r.regex ? Qt::Checked : Qt::Unchecked;
        if (role == Qt::ToolTipRole) return tr("Checked: the pattern is a regex searched anywhere in the name; else a glob over the whole name");
        return {};
    }
    if (role == Qt::ToolTipRole) {
        switch (index.column()) {
        case Pattern: return tr("Glob over the whole tensor name ('*' spans dots, '?' one character) or, with Regex, a regex (RE2 syntax: no backreferences or lookaround)");
        case Layers: return tr("Decoder layers: empty = every tensor, 3, 0-3, 4- (from 4 on), -7 (up to 7); a range skips tensors outside layers");
        case Target: return tr("target: quantize a tensor that is not a default target; keep: leave it in its source dtype");
        default: return tr("Empty: the rule leaves this setting as earlier rules or the defaults set it");
        }
    }
    if (role != Qt::DisplayRole && role != Qt::EditRole) return {};
    switch (index.column()) {
    case Pattern: return QString::fromStdString(r.pattern);
    case Layers: return layersText(r);
    case Target: return !s.target ? QString() : *s.target ? QString("target") : QString("keep");
    case Quant:
        if (!s.quant) return QString();
        return role == Qt::EditRole ? QString::fromLatin1(loftq::quant_format(*s.quant).name) : quantStyle(int(*s.quant)).label;
    case Block: return num(s.block);
    case Rank: return num(s.rank);
    case Iters: return num(s.iters);
    default: return {};
    }
}

bool RulesModel::setData(const QModelIndex& index, const QVariant& value, int role) {
    if (!index.isValid() || !checkIndex(index, CheckIndexOption::IndexIsValid)) return false;
    loftq::PlanRule r = rules_[size_t(index.row())];
    auto intOrUnset = [&](std::optional<int>& field) {
        bool ok = false;
        int v = value.toInt(&ok);
        if (value.toString().trimmed().isEmpty()) field.reset();
        else if (!ok) return false;
        else if (v < 0) field.reset();
        else field = v;
        return true;
    };
    QString why;
    if (index.column() == Regex) {
        if (role != Qt::CheckStateRole) return false;
        r.regex = Qt::CheckState(value.toInt()) == Qt::Checked;
    } else {
        if (role != Qt::EditRole) return false;
        switch (index.column()) {
        case Pattern: r.pattern = value.toString().trimmed().toStdString(); break;
        case Layers:
            if (!parseLayers(value.toString(), r.layer_min, r.layer_max, &why)) {
                emit refused(tr("Rule %1 not changed: %2").arg(index.row() + 1).arg(why));
                return false;
            }
            break;
        case Target: {
            QString t = value.toString().trimmed().toLower();
            if (t.isEmpty()) r.set.target.reset();
            else if (t == "target") r.set.target = true;
            else if (t == "keep") {
                r.set.target = false;
                r.set.quant.reset();
            } else why = tr("target must be empty, 'target' or 'keep'");
            break;
        }
        case Quant: {
            QString q = value.toString().trimmed();
            if (q.isEmpty()) r.set.quant.reset();
            else if (q.compare("keep", Qt::CaseInsensitive) == 0) {
                r.set.quant.reset();
                r.set.target = false;
            } else if (auto k = loftq::quant_kind_from_name(q.toStdString())) {
                r.set.quant = *k;
                if (r.set.target == false) r.set.target.reset();   // a quantizer undoes "keep"
            } else why = tr("unknown quantizer '%1' (nf4, nf3, nf2, int2, int3, int4, int8 or keep)").arg(q);
            break;
        }
        case Block: if (!intOrUnset(r.set.block)) why = tr("block must be a number"); break;
        case Rank: if (!intOrUnset(r.set.rank)) why = tr("rank must be a number"); break;
        case Iters: if (!intOrUnset(r.set.iters)) why = tr("T must be a number"); break;
        default: return false;
        }
    }
    if (why.isEmpty()) why = validate(r);
    if (!why.isEmpty()) {
        emit refused(tr("Rule %1 not changed: %2").arg(index.row() + 1).arg(why));
        return false;
    }
    rules_[size_t(index.row())] = r;
    emit dataChanged(this->index(index.row(), 0), this->index(index.row(), ColumnCount - 1));
    emit ruleEdited(index.row());
    return true;
}

QVariant RulesModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o == Qt::Vertical) {
        if (role == Qt::DisplayRole && section >= 0 && section < rowCount()) return section + 1;
        return {};
    }
    static const char* names[] = {"Pattern", "Regex", "Layers", "Target", "Quant", "Block", "Rank", "T"};
    if (section < 0 || section >= ColumnCount) return {};
    if (role == Qt::DisplayRole) return tr(names[section]);
    if (role == Qt::ToolTipRole && section == Iters) return tr("Alternating steps T (0 = QLoRA)");
    return {};
}

// ---------------------------------------------------------------- delegate

QWidget* RulesDelegate::createEditor(QWidget* parent, const QStyleOptionViewItem& option, const QModelIndex& index) const {
    switch (index.column()) {
    case RulesModel::Target: {
        auto* c = new QComboBox(parent);
        c->addItem(tr("(unchanged)"), QString());
        c->addItem(tr("target"), QString("target"));
        c->addItem(tr("keep"), QString("keep"));
        return c;
    }
    case RulesModel::Quant: {
        auto* c = new QComboBox(parent);
        c->addItem(tr("(unchanged)"), QString());
        for (loftq::QuantKind k : loftq::all_quant_kinds()) {
            const QuantStyle& st = quantStyle(int(k));
            QPixmap swatch(16, 16);
            swatch.fill(st.fill);
            c->addItem(QIcon(swatch), st.label, QString::fromLatin1(loftq::quant_format(k).name));
        }
        c->addItem(tr("keep"), QString("keep"));
        return c;
    }
    case RulesModel::Block:
    case RulesModel::Rank:
    case RulesModel::Iters: {
        auto* s = new QSpinBox(parent);
        int max = index.column() == RulesModel::Block ? kMaxBlock : index.column() == RulesModel::Rank ? kMaxRank : kMaxIters;
        s->setRange(-1, max);
        s->setSpecialValueText(QString::fromUtf8("—"));   // -1: the rule leaves this setting
        return s;
    }
    case RulesModel::Layers: {
        auto* e = new QLineEdit(parent);
        e->setPlaceholderText(tr("all, 3, 0-3, 4-"));
        return e;
    }
    default: return QStyledItemDelegate::createEditor(parent, option, index);
    }
}

void RulesDelegate::setEditorData(QWidget* editor, const QModelIndex& index) const {
    if (auto* c = qobject_cast<QComboBox*>(editor)) {
        QString v = index.data(Qt::EditRole).toString();
        int i = c->findData(v);
        c->setCurrentIndex(std::max(0, i));
    } else if (auto* s = qobject_cast<QSpinBox*>(editor)) {
        s->setValue(index.data(Qt::EditRole).toInt());
    } else {
        QStyledItemDelegate::setEditorData(editor, index);
    }
}

void RulesDelegate::setModelData(QWidget* editor, QAbstractItemModel* model, const QModelIndex& index) const {
    if (auto* c = qobject_cast<QComboBox*>(editor)) {
        model->setData(index, c->currentData(), Qt::EditRole);
    } else if (auto* s = qobject_cast<QSpinBox*>(editor)) {
        s->interpretText();
        model->setData(index, s->value(), Qt::EditRole);
    } else {
        QStyledItemDelegate::setModelData(editor, model, index);
    }
}

}  // namespace studio
