// plan_grid_view.cpp: see plan_grid_view.h. The edit actions live in cellMenu() and are also
// added to the view itself with WidgetWithChildrenShortcut, so their shortcuts work whenever the
// grid has focus and the menu shows them.
#include "plan_grid_view.h"

#include <QContextMenuEvent>
#include <QHeaderView>
#include <QInputDialog>
#include <QMenu>
#include <QUndoStack>
#include <algorithm>
#include <map>

#include "plan_document.h"
#include "plan_grid_delegate.h"
#include "plan_grid_model.h"
#include "quant_colors.h"

namespace studio {

PlanGridView::PlanGridView(PlanDocument* doc, RunResults* results, QWidget* parent)
    : QTableView(parent), doc_(doc), model_(new PlanGridModel(doc, results, this)) {
    setModel(model_);
    setItemDelegate(new PlanGridDelegate(this));
    setSelectionMode(QAbstractItemView::ExtendedSelection);
    setSelectionBehavior(QAbstractItemView::SelectItems);
    setEditTriggers(QAbstractItemView::NoEditTriggers);
    setWordWrap(false);
    setCornerButtonEnabled(true);   // the corner button selects all
    setMouseTracking(true);
    horizontalHeader()->setSectionsClickable(true);
    verticalHeader()->setSectionsClickable(true);
    horizontalHeader()->setHighlightSections(true);
    verticalHeader()->setHighlightSections(true);
    verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
    horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
    updateSectionSizes();
    buildMenu();

    connect(selectionModel(), &QItemSelectionModel::selectionChanged, this, [this] {
        updateActions();
        emit cellSelectionChanged(selectedCells());
    });
    // A reset clears the selection without selectionChanged.
    connect(model_, &QAbstractItemModel::modelReset, this, [this] {
        updateActions();
        emit cellSelectionChanged({});
    });
    updateActions();
}

void PlanGridView::updateSectionSizes() {
    QSize cell = PlanGridDelegate::cellSize(font());
    horizontalHeader()->setMinimumSectionSize(std::min(cell.width(), fontMetrics().averageCharWidth() * 4));
    horizontalHeader()->setDefaultSectionSize(cell.width());
    verticalHeader()->setMinimumSectionSize(std::min(cell.height(), fontMetrics().height()));
    verticalHeader()->setDefaultSectionSize(cell.height());
    for (int c = 0; c < horizontalHeader()->count(); ++c) horizontalHeader()->resizeSection(c, cell.width());
}

void PlanGridView::changeEvent(QEvent* e) {
    QTableView::changeEvent(e);
    if (e->type() == QEvent::FontChange) updateSectionSizes();
}

QList<QPoint> PlanGridView::selectedCells() const {
    QList<QPoint> out;
    if (!selectionModel()) return out;
    for (const QModelIndex& i : selectionModel()->selectedIndexes()) out << QPoint(i.column(), i.row());
    std::sort(out.begin(), out.end(), [](QPoint a, QPoint b) { return a.y() != b.y() ? a.y() < b.y() : a.x() < b.x(); });
    return out;
}

void PlanGridView::selectCells(const QList<QPoint>& cells) {
    QItemSelection sel;
    for (const QPoint& c : cells) {
        QModelIndex i = model_->index(c.y(), c.x());
        if (i.isValid()) sel.select(i, i);
    }
    selectionModel()->select(sel, QItemSelectionModel::ClearAndSelect);
    if (!cells.isEmpty()) selectionModel()->setCurrentIndex(model_->index(cells.first().y(), cells.first().x()), QItemSelectionModel::NoUpdate);
}

void PlanGridView::applyPatch(const loftq::SettingsPatch& p, const QString& what) {
    if (p.target && !*p.target) {
        keepSelected();
        return;
    }
    doc_->editCells(selectedCells(), p, what);
}

void PlanGridView::keepSelected() {
    loftq::Plan next = doc_->plan();
    bool any = false;
    for (const QPoint& c : selectedCells()) {
        int t = doc_->tensorAt(c.y(), c.x());
        if (t < 0) continue;
        loftq::SettingsPatch keep;
        keep.target = false;
        next.overrides[doc_->tensors()[size_t(t)].name] = keep;
        any = true;
    }
    if (any) doc_->replacePlan(next, tr("Keep in 16-bit"));
}

void PlanGridView::clearOverrides() {
    loftq::Plan next = doc_->plan();
    size_t erased = 0;
    for (const QPoint& c : selectedCells()) {
        int t = doc_->tensorAt(c.y(), c.x());
        if (t >= 0) erased += next.overrides.erase(doc_->tensors()[size_t(t)].name);
    }
    if (erased) doc_->replacePlan(next, tr("Clear overrides"));
}

void PlanGridView::scaleRank(bool up) {
    // Group the selected target cells by their current rank: one editCells per new rank.
    std::map<int, QList<QPoint>> by_rank;
    for (const QPoint& c : selectedCells()) {
        int w = doc_->weightAt(c.y(), c.x());
        if (w < 0) continue;
        int r = doc_->resolved().weights[size_t(w)].s.rank;
        int nr = std::clamp(up ? r * 2 : r / 2, 1, 1024);
        if (nr != r) by_rank[nr] << c;
    }
    if (by_rank.empty()) return;
    QString what = up ? tr("Double rank") : tr("Halve rank");
    doc_->undoStack()->beginMacro(what);
    for (auto& [rank, cells] : by_rank) {
        loftq::SettingsPatch p;
        p.rank = rank;
        doc_->editCells(cells, p, what);
    }
    doc_->undoStack()->endMacro();
}

QAction* PlanGridView::editAction(const QString& objectName) const {
    return menu_ ? menu_->findChild<QAction*>(objectName) : nullptr;
}

void PlanGridView::buildMenu() {
    menu_ = new QMenu(this);
    auto add = [this](QMenu* m, const QString& name, const QString& text, const QList<QKeySequence>& keys, auto fn) {
        QAction* a = new QAction(text, menu_);   // parented to the menu so findChild sees it
        a->setObjectName(name);
        a->setShortcuts(keys);
        a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        connect(a, &QAction::triggered, this, fn);
        m->addAction(a);
        if (!keys.isEmpty()) addAction(a);
        return a;
    };
    using K = loftq::QuantKind;
    QMenu* q = menu_->addMenu(tr("Quantizer"));
    struct QItem { K k; const char* id; QList<QKeySequence> keys; };
    const QItem qs[] = {
        {K::NF4, "quant_nf4", {QKeySequence("4")}},
        {K::NF3, "quant_nf3", {QKeySequence("3")}},
        {K::NF2, "quant_nf2", {QKeySequence("2")}},
        {K::INT2, "quant_int2", {QKeySequence("Alt+2"), QKeySequence("Shift+2")}},
        {K::INT3, "quant_int3", {QKeySequence("Alt+3"), QKeySequence("Shift+3")}},
        {K::INT4, "quant_int4", {QKeySequence("Alt+4"), QKeySequence("Shift+4")}},
        {K::INT8, "quant_int8", {QKeySequence("8")}},
    };
    for (const QItem& it : qs) {
        const QuantStyle& st = quantStyle(int(it.k));
        QPixmap swatch(16, 16);
        swatch.fill(st.fill);
        QAction* a = add(q, it.id, st.label, it.keys, [this, k = it.k, label = st.label] {
            loftq::SettingsPatch p;
            p.quant = k;
            applyPatch(p, tr("Set quantizer %1").arg(label));
        });
        a->setIcon(QIcon(swatch));
    }
    q->addSeparator();
    add(q, "quant_keep", tr("Keep 16-bit"), {QKeySequence("K")}, [this] { keepSelected(); });

    QMenu* r = menu_->addMenu(tr("Rank"));
    for (int rank : {4, 8, 16, 32, 64, 128})
        add(r, QString("rank_%1").arg(rank), QString::number(rank), {}, [this, rank] {
            loftq::SettingsPatch p;
            p.rank = rank;
            applyPatch(p, tr("Set rank %1").arg(rank));
        });
    add(r, "rank_other", tr("Other…"), {}, [this] {
        QList<QPoint> cells = selectedCells();
        int w = cells.isEmpty() ? -1 : doc_->weightAt(cells.first().y(), cells.first().x());
        int cur = w >= 0 ? doc_->resolved().weights[size_t(w)].s.rank : doc_->plan().defaults.rank;
        bool ok = false;
        int rank = QInputDialog::getInt(this, tr("LoRA rank"), tr("Rank r for the selected weights:"), cur, 0, 65536, 1, &ok);
        if (!ok) return;
        loftq::SettingsPatch p;
        p.rank = rank;
        applyPatch(p, tr("Set rank %1").arg(rank));
    });
    r->addSeparator();
    add(r, "rank_double", tr("Double"), {QKeySequence("+"), QKeySequence("=")}, [this] { scaleRank(true); });
    add(r, "rank_halve", tr("Halve"), {QKeySequence("-")}, [this] { scaleRank(false); });

    QMenu* t = menu_->addMenu(tr("Steps T"));
    for (int it : {0, 1, 2, 5, 10})
        add(t, QString("iters_%1").arg(it), it == 0 ? tr("0 (QLoRA)") : QString::number(it), {}, [this, it] {
            loftq::SettingsPatch p;
            p.iters = it;
            applyPatch(p, tr("Set T = %1").arg(it));
        });

    QMenu* b = menu_->addMenu(tr("Block"));
    for (int blk : {32, 64, 128, 256})
        add(b, QString("block_%1").arg(blk), QString::number(blk), {}, [this, blk] {
            loftq::SettingsPatch p;
            p.block = blk;
            applyPatch(p, tr("Set block %1").arg(blk));
        });

    menu_->addSeparator();
    add(menu_, "clear_overrides", tr("Clear overrides"), {QKeySequence(QKeySequence::Delete), QKeySequence(Qt::Key_Backspace)},
        [this] { clearOverrides(); });
}

void PlanGridView::updateActions() {
    bool any = false;
    for (const QPoint& c : selectedCells())
        if (doc_->tensorAt(c.y(), c.x()) >= 0) { any = true; break; }
    for (QAction* a : menu_->findChildren<QAction*>())
        if (!a->menu()) a->setEnabled(any);
}

void PlanGridView::contextMenuEvent(QContextMenuEvent* e) {
    QModelIndex i = indexAt(e->pos());   // viewport coordinates: QAbstractScrollArea forwards from there
    if (i.isValid() && !selectionModel()->isSelected(i)) {
        selectionModel()->setCurrentIndex(i, QItemSelectionModel::ClearAndSelect);
    }
    updateActions();
    menu_->popup(e->globalPos());
}

}  // namespace studio

