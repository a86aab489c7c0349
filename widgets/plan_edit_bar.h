// plan_edit_bar.h: the "set selected cells" toolbar above the plan grid: Quantizer (with Keep
// 16-bit), Block, Rank r, Steps T and "Apply to selection" (Return or Enter while the bar has
// focus). Apply sets all four fields on every selected cell (one undo step through
// PlanGridView::applyPatch); Keep sets only "keep". When the selection or the plan changes the
// controls show the resolved settings of the first selected cell (kept cell: Keep and the plan
// defaults), and a label says how many cells are selected and whether their settings differ.
// Leaves out: per-field "apply only what changed" (one honest rule: all four fields).
#pragma once
#include <QToolBar>

#include "loftq/plan.h"

class QComboBox;
class QSpinBox;
class QLabel;

namespace studio {

class PlanDocument;
class PlanGridView;

class PlanEditBar : public QToolBar {
    Q_OBJECT
public:
    PlanEditBar(PlanDocument* doc, PlanGridView* grid, QWidget* parent = nullptr);

    // The patch Apply would make now: quant, block, rank, iters; or {target = false} for Keep.
    loftq::SettingsPatch currentPatch() const;
    void apply();
    // Shows the settings of the first selected cell (called on selection and plan changes).
    void refresh();

    QComboBox* quantCombo() const { return quant_; }    // items: NF4 ... INT8, Keep (data: quant code)
    QComboBox* blockCombo() const { return block_; }    // data: block size
    QSpinBox* rankSpin() const { return rank_; }
    QSpinBox* itersSpin() const { return iters_; }
    QAction* applyAction() const { return apply_; }
    QLabel* selectionLabel() const { return info_; }

private:
    void setBlock(int block);
    void updateEnabled();

    PlanDocument* doc_;
    PlanGridView* grid_;
    QComboBox* quant_;
    QComboBox* block_;
    QSpinBox* rank_;
    QSpinBox* iters_;
    QAction* apply_;
    QLabel* info_;
};

}  // namespace studio
