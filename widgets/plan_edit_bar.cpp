// plan_edit_bar.cpp: see plan_edit_bar.h.
#include "plan_edit_bar.h"

#include <QAction>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSpinBox>
#include <QToolButton>

#include "flow_layout.h"
#include "plan_document.h"
#include "plan_grid_view.h"
#include "quant_colors.h"

namespace studio {

namespace {
// A caption and its field, kept together when the bar wraps.
QWidget* labelled(const QString& text, QWidget* field, QWidget* parent) {
    auto* box = new QWidget(parent);
    auto* h = new QHBoxLayout(box);
    h->setContentsMargins(0, 0, 0, 0);
    h->setSpacing(3);
    auto* l = new QLabel(text, box);
    l->setBuddy(field);
    h->addWidget(l);
    field->setParent(box);
    h->addWidget(field);
    return box;
}
}  // namespace

PlanEditBar::PlanEditBar(PlanDocument* doc, PlanGridView* grid, QWidget* parent)
    : QWidget(parent), doc_(doc), grid_(grid) {
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
    // Up to 999 can be typed, so that "300" is not silently read as 30; above the engine's 100
    // the bar says so and Apply is disabled.
    iters_->setRange(0, 999);
    iters_->setSpecialValueText(tr("0 (QLoRA)"));
    iters_->setToolTip(tr("Alternating steps T (0 = plain QLoRA quantization, no low-rank correction)"));

    // A flow of groups: in a narrow window the bar wraps onto a second row, never hiding a field.
    auto* flow = new FlowLayout(this, 10, 3);
    flow->setContentsMargins(4, 3, 4, 3);
    flow->addWidget(labelled(tr("Quantizer"), quant_, this));
    flow->addWidget(labelled(tr("Block"), block_, this));
    flow->addWidget(labelled(tr("Rank"), rank_, this));
    flow->addWidget(labelled(tr("T"), iters_, this));
    apply_ = new QAction(tr("Apply"), this);
    connect(apply_, &QAction::triggered, this, &PlanEditBar::apply);
    addAction(apply_);   // its Return/Enter shortcut, while the bar has focus
    applyButton_ = new QToolButton(this);
    applyButton_->setDefaultAction(apply_);
    applyButton_->setToolButtonStyle(Qt::ToolButtonTextOnly);
    flow->addWidget(applyButton_);
    apply_->setObjectName("applyToSelection");
    apply_->setShortcuts({QKeySequence(Qt::Key_Return), QKeySequence(Qt::Key_Enter)});
    apply_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    apply_->setToolTip(tr("Apply to selection: set quantizer, block, rank and T on every selected cell (Return)"));
    info_ = new QLabel(this);
    info_->setContentsMargins(8, 0, 4, 0);
    info_->setTextFormat(Qt::RichText);
    flow->addWidget(info_);

    connect(quant_, &QComboBox::currentIndexChanged, this, [this] { updateEnabled(); });
    // Any change of a field shows that it is pending until applied.
    connect(quant_, &QComboBox::currentIndexChanged, this, [this] { updatePending(); });
    connect(block_, &QComboBox::currentIndexChanged, this, [this] { updatePending(); });
    connect(rank_, &QSpinBox::valueChanged, this, [this] { updatePending(); });
    connect(iters_, &QSpinBox::valueChanged, this, [this] { updatePending(); });
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
    selectionText_ = n == 0 ? tr("no cells selected") : mixed ? tr("%1, mixed: showing the first").arg(count) : count;
    selected_ = n;
    shown_ = currentPatch();
    updateEnabled();
    updatePending();
}

bool PlanEditBar::pending() const {
    const loftq::SettingsPatch p = currentPatch();
    return selected_ > 0 && (p.target != shown_.target || p.quant != shown_.quant || p.block != shown_.block ||
                             p.rank != shown_.rank || p.iters != shown_.iters);
}

QString PlanEditBar::problem() const {
    if (quant_->currentData().toInt() != kQuantKeep && iters_->value() > kMaxSteps)
        return tr("T is at most %1").arg(kMaxSteps);
    return {};
}

void PlanEditBar::updatePending() {
    const QString why = problem();
    const bool changed = pending();
    apply_->setEnabled(selected_ > 0 && why.isEmpty());
    apply_->setText(changed ? tr("Apply •") : tr("Apply"));
    QFont f = applyButton_->font();
    f.setBold(changed);
    applyButton_->setFont(f);
    QString text = selectionText_.toHtmlEscaped();
    if (!why.isEmpty())
        text += QStringLiteral(" · <span style=\"color:#c62828\">%1</span>").arg(why.toHtmlEscaped());
    else if (changed)
        text += QStringLiteral(" · <b>%1</b>").arg(tr("changed, not applied: Return or Apply").toHtmlEscaped());
    info_->setText(text);
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
    if (!problem().isEmpty() || selected_ == 0) return;
    grid_->applyPatch(p, what);
}

}  // namespace studio
