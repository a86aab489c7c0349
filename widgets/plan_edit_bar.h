// plan_edit_bar.h: the "set selected cells" toolbar above the plan grid: Quantizer (with Keep
// 16-bit), Block, Rank r, Steps T and Apply (to the selection; Return or Enter while the bar has
// focus; marked while the fields hold a change not applied yet). Apply sets all four fields on every selected cell (one undo step through
// PlanGridView::applyPatch); Keep sets only "keep". When the selection or the plan changes the
// controls show the resolved settings of the first selected cell (kept cell: Keep and the plan
// defaults), and a label says how many cells are selected and whether their settings differ.
// The groups flow left to right and wrap onto another row in a narrow window (flow_layout.h), so
// no field or Apply ever hides behind an overflow button.
// Leaves out: per-field "apply only what changed" (one honest rule: all four fields).
#pragma once
#include <QWidget>

#include "loftq/plan.h"

class QComboBox;
class QSpinBox;
class QLabel;
class QToolButton;

namespace studio {

class PlanDocument;
class PlanGridView;

class PlanEditBar : public QWidget {
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
    QToolButton* applyButton() const { return applyButton_; }
    QLabel* selectionLabel() const { return info_; }
    // The fields differ from the selection's settings shown: Apply is marked (bold, "•") and the
    // label says the change is not applied yet.
    bool pending() const;
    // Why Apply is disabled for these fields ("" when it is not): T above the engine's limit.
    QString problem() const;
    static constexpr int kMaxSteps = 100;   // the plan format's limit on T

private:
    void updatePending();
    loftq::SettingsPatch shown_;   // what refresh() showed for the selection
    QString selectionText_;
    int selected_ = 0;
    void setBlock(int block);
    void updateEnabled();

    PlanDocument* doc_;
    PlanGridView* grid_;
    QComboBox* quant_;
    QComboBox* block_;
    QSpinBox* rank_;
    QSpinBox* iters_;
    QAction* apply_;
    QToolButton* applyButton_ = nullptr;
    QLabel* info_;
};

}  // namespace studio
