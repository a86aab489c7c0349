// plan_edit_bar.cpp: see plan_edit_bar.h.
#include "plan_edit_bar.h"

#include <QComboBox>
#include <QLabel>
#include <QSpinBox>

#include "plan_document.h"
#include "plan_grid_view.h"
#include "quant_colors.h"

namespace studio {

namespace {
QLabel* caption(const QString& text, QWidget* parent) {
    auto* l = new QLabel(text, parent);
    l->setContentsMargins(6, 0, 2, 0);
    return l;
}
}  // namespace

PlanEditBar::PlanEditBar(PlanDocument* doc, PlanGridView* grid, QWidget* parent)
    : QToolBar(tr("Edit selected cells"), parent), doc_(doc), grid_(grid) {
    setObjectName("planEditBar");

    quant_ = new QComboBox(this);
    for (const QuantStyle& st : quantStyles()) {
        if (st.code == kQuantEmpty) continue;
        QPixmap swatch(16, 16);
        swatch.fill(st.fill);
        quant_->addItem(QIcon(swatch), st.label, st.code);
    }
    quant_->setToolTip(tr("Quantizer of the selected weights (Keep 16-bit: not quantized)"));

    block_ = new QComboBox(this);
    for (int b : {32, 64, 128, 256}) block_->addItem(QString::number(b), b);
    block_->setToolTip(tr("Block size: elements sharing one fp32 absmax scale"));

    rank_ = new QSpinBox(this);
    rank_->setRange(0, 65536);
    rank_->setToolTip(tr("LoRA rank r"));
    iters_ = new QSpinBox(this);
    iters_->setRange(0, 100);
    iters_->setSpecialValueText(tr("0 (QLoRA)"));
    iters_->setToolTip(tr("Alternating steps T (0 = plain QLoRA quantization, no low-rank correction)"));

    addWidget(caption(tr("Quantizer"), this));
    addWidget(quant_);
    addWidget(caption(tr("Block"), this));
    addWidget(block_);
    addWidget(caption(tr("Rank"), this));
    addWidget(rank_);
    addWidget(caption(tr("T"), this));
    addWidget(iters_);
    addSeparator();
    apply_ = addAction(tr("Apply to selection"), this, &PlanEditBar::apply);
    apply_->setObjectName("applyToSelection");
    apply_->setShortcuts({QKeySequence(Qt::Key_Return), QKeySequence(Qt::Key_Enter)});
    apply_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    apply_->setToolTip(tr("Set quantizer, block, rank and T on every selected cell (Return)"));
    info_ = new QLabel(this);
    info_->setContentsMargins(8, 0, 4, 0);
    addWidget(info_);

    connect(quant_, &QComboBox::currentIndexChanged, this, [this] { updateEnabled(); });
    connect(grid_, &PlanGridView::cellSelectionChanged, this, [this] { refresh(); });
    connect(doc_, &PlanDocument::planChanged, this, &PlanEditBar::refresh);
    refresh();
}

void PlanEditBar::setBlock(int block) {
    int i = block_->findData(block);
    if (i < 0) {   // a block from a loaded plan that the list lacks: add it, sorted
        int at = 0;
        while (at < block_->count() && block_->itemData(at).toInt() < block) ++at;
        block_->insertItem(at, QString::number(block), block);
        i = at;
    }
    block_->setCurrentIndex(i);
}

void PlanEditBar::refresh() {
    QList<QPoint> cells = grid_->selectedCells();
    int first = -1, n = 0;
    bool mixed = false;
    const loftq::WeightSettings* s0 = nullptr;
    for (const QPoint& c : cells) {
        int t = doc_->tensorAt(c.y(), c.x());
        if (t < 0) continue;
        int w = doc_->weightOfTensor(t);
        const loftq::WeightSettings* s = w >= 0 ? &doc_->resolved().weights[size_t(w)].s : nullptr;
        if (n == 0) {
            first = w;
            s0 = s;
        } else if (bool(s) != bool(s0) || (s && (s->quant != s0->quant || s->block != s0->block || s->rank != s0->rank ||
                                                   s->iters != s0->iters))) {
            mixed = true;
        }
        ++n;
    }
    const loftq::WeightSettings& show = s0 ? *s0 : doc_->plan().defaults;
    quant_->setCurrentIndex(quant_->findData(n > 0 && first < 0 ? kQuantKeep : int(show.quant)));
    setBlock(show.block);
    rank_->setValue(show.rank);
    iters_->setValue(show.iters);
    QString count = n == 1 ? tr("1 cell") : tr("%1 cells").arg(n);
    info_->setText(n == 0 ? tr("no cells selected") : mixed ? tr("%1, mixed: showing the first").arg(count) : count);
    apply_->setEnabled(n > 0);
    updateEnabled();
}

void PlanEditBar::updateEnabled() {
    bool keep = quant_->currentData().toInt() == kQuantKeep;
    block_->setEnabled(!keep);
    rank_->setEnabled(!keep);
    iters_->setEnabled(!keep);
}

loftq::SettingsPatch PlanEditBar::currentPatch() const {
    loftq::SettingsPatch p;
    int code = quant_->currentData().toInt();
    if (code == kQuantKeep) {
        p.target = false;
        return p;
    }
    p.quant = loftq::QuantKind(code);
    p.block = block_->currentData().toInt();
    p.rank = rank_->value();
    p.iters = iters_->value();
    return p;
}

void PlanEditBar::apply() {
    loftq::SettingsPatch p = currentPatch();
    QString what = p.target ? tr("Keep in 16-bit")
                            : tr("Set %1/b%2 r%3 T%4").arg(quant_->currentText()).arg(*p.block).arg(*p.rank).arg(*p.iters);
    grid_->applyPatch(p, what);
}

}  // namespace studio
