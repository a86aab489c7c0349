// budget_bar.h: the plan's size in one glance — a horizontal stacked bar (quantized codes +
// scales, LoRA adapters, untouched tensors) scaled to max(fp16 model, budget, total), a marker at
// the optional budget with the overflow drawn red, and one line of summary text. Every number is
// a field of the engine's loftq::PlanSize (or one of its two methods); the widget only divides
// for percentages and formats in decimal units (1 kB = 1000 B). The tooltip lists every field
// exactly in bytes. Painted by hand; about two text lines tall. Leaves out editing the budget
// (the app's setting) and per-tensor breakdowns (the grid's job).
#pragma once
#include <QColor>
#include <QRectF>
#include <QString>
#include <QStringList>
#include <QWidget>
#include <cstdint>
#include <vector>

#include "loftq/budget.h"

namespace studio {

class BudgetBar : public QWidget {
    Q_OBJECT
public:
    explicit BudgetBar(QWidget* parent = nullptr);

    void setSize(const loftq::PlanSize& size, uint64_t budget_bytes);   // budget 0 = none
    // What an export of the plan takes on disk (loftq::export_footprint totals; 0 = unknown):
    // more than the plan's size, since exports store the LoRA factors in fp32 (the packed model
    // file once more) and the HF layout every target dequantized. The summary names the packed
    // figure, the tooltip all three.
    void setDiskBytes(uint64_t packed, uint64_t hf, uint64_t bnb);
    uint64_t diskBytesPacked() const { return disk_packed_; }
    const loftq::PlanSize& size() const { return size_; }
    uint64_t budget() const { return budget_; }
    bool overBudget() const { return budget_ > 0 && size_.total_bytes > budget_; }

    // Exactly the text shown (unelided), e.g.
    // "1.23 GB · 2.61 bits/param · 34.5% of fp16 · budget 2.00 GB (62%)".
    QString summaryText() const;
    QString detailsText() const;   // the tooltip: every PlanSize number in bytes

    // The bar's colours: quantized codes + scales, LoRA adapters, untouched tensors, and the
    // tint over the part beyond the budget.
    enum class Part { Quantized, Lora, Untouched, Over };
    static QColor color(Part part);

    // The segment labels drawn ("quantized", "LoRA", "other"): those that fit their segment and
    // that the budget marker does not cross.
    QStringList shownLabels() const;

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* e) override;

private:
    struct Segment {
        QRectF rect;
        QColor color;
        QString label;
        bool label_shown = false;
    };
    std::vector<Segment> segments() const;   // in paint order, with the bar's geometry now
    loftq::PlanSize size_;
    uint64_t budget_ = 0;
    uint64_t disk_packed_ = 0, disk_hf_ = 0, disk_bnb_ = 0;
};

}  // namespace studio
