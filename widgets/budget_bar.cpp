// budget_bar.cpp: see budget_bar.h. Layout, top to bottom: the bar (one text line tall), a small
// gap, the summary line; horizontal positions are bytes * width / scale.
#include "budget_bar.h"

#include <QPainter>
#include <algorithm>

#include "plot_style.h"

namespace studio {

namespace {
const QColor kQuantized(0x4e79a7), kLora(0xf28e2b), kUntouched(0xbab0ac), kOver(0xd32f2f);

QString bytes_line(const QString& what, uint64_t b) {
    return QStringLiteral("%1: %2 B (%3)").arg(what).arg(b).arg(format_bytes_decimal(b));
}
}  // namespace

QColor BudgetBar::color(Part part) {
    switch (part) {
    case Part::Quantized: return kQuantized;
    case Part::Lora: return kLora;
    case Part::Untouched: return kUntouched;
    case Part::Over: return kOver;
    }
    return {};
}

BudgetBar::BudgetBar(QWidget* parent) : QWidget(parent) {
    setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Fixed);
    setToolTip(detailsText());
}

void BudgetBar::setSize(const loftq::PlanSize& size, uint64_t budget_bytes) {
    size_ = size;
    budget_ = budget_bytes;
    setToolTip(detailsText());
    update();
}

void BudgetBar::setDiskBytes(uint64_t packed, uint64_t hf, uint64_t bnb) {
    disk_packed_ = packed;
    disk_hf_ = hf;
    disk_bnb_ = bnb;
    setToolTip(detailsText());
    update();
}

QString BudgetBar::summaryText() const {
    if (size_.params == 0 && size_.total_bytes == 0) return tr("no model");
    QString s = QStringLiteral("%1 · %2 bits/param")
                    .arg(format_bytes_decimal(size_.total_bytes))
                    .arg(size_.bits_per_param(), 0, 'f', 2);
    if (size_.fp16_bytes > 0)
        s += tr(" · %1% of fp16").arg(100.0 * double(size_.total_bytes) / double(size_.fp16_bytes), 0, 'f', 1);
    if (budget_ > 0) {
        s += tr(" · budget %1 (%2%").arg(format_bytes_decimal(budget_)).arg(100.0 * double(size_.total_bytes) / double(budget_), 0, 'f', 0);
        s += overBudget() ? tr(", over)") : QStringLiteral(")");
    }
    if (disk_packed_ > 0) s += tr(" · packed export ≈ %1 on disk").arg(format_bytes_decimal(disk_packed_));
    return s;
}

QString BudgetBar::detailsText() const {
    QStringList l;
    l << tr("Plan size (decimal units: 1 kB = 1000 B, 1 MB = 10⁶ B, 1 GB = 10⁹ B)");
    l << bytes_line(tr("total"), size_.total_bytes);
    l << bytes_line(tr("  quantized codes + scales (blue)"), size_.quantized_bytes);
    l << bytes_line(tr("  LoRA adapters (orange)"), size_.lora_bytes);
    l << bytes_line(tr("  untouched tensors (grey)"), size_.untouched_bytes);
    l << bytes_line(tr("fp16 model"), size_.fp16_bytes);
    l << bytes_line(tr("source model"), size_.source_bytes);
    l << (budget_ > 0 ? bytes_line(tr("budget"), budget_) : tr("budget: none"));
    if (disk_packed_ > 0) {
        l << tr("An export takes more on disk than the plan's size: its LoRA factors are stored in fp32 (in loftq_init/, "
                "and the packed model file holds them too); the HF layout stores every target dequantized:");
        l << bytes_line(tr("  packed export"), disk_packed_);
        l << bytes_line(tr("  HF LoftQ layout export"), disk_hf_);
        if (disk_bnb_ > 0) l << bytes_line(tr("  bitsandbytes NF4 export"), disk_bnb_);
    }
    l << tr("parameters: %1 (targets %2, LoRA %3)").arg(size_.params).arg(size_.target_params).arg(size_.lora_params);
    l << tr("bits per parameter: %1 overall, %2 for the targets' codes + scales")
             .arg(size_.bits_per_param(), 0, 'f', 4)
             .arg(size_.target_bits_per_weight(), 0, 'f', 4);
    return l.join('\n');
}

QSize BudgetBar::sizeHint() const {
    const QFontMetrics fm = fontMetrics();
    return QSize(fm.averageCharWidth() * 64, 2 * fm.height() + fm.height() / 3 + 4);
}

QSize BudgetBar::minimumSizeHint() const {
    const QFontMetrics fm = fontMetrics();
    return QSize(fm.averageCharWidth() * 12, 2 * fm.height() + fm.height() / 3 + 4);
}

std::vector<BudgetBar::Segment> BudgetBar::segments() const {
    const QFontMetrics fm = fontMetrics();
    const QRectF bar(2, 2, std::max(4, width() - 4), fm.height());
    const uint64_t scale = std::max({size_.fp16_bytes, budget_, size_.total_bytes, uint64_t(1)});
    auto x_of = [&](uint64_t bytes) { return bar.left() + bar.width() * double(bytes) / double(scale); };
    const double marker = budget_ > 0 ? std::clamp(x_of(budget_), bar.left() + 1.5, bar.right() - 1.5) : -1e9;
    std::vector<Segment> out;
    uint64_t at = 0;
    const std::pair<uint64_t, std::pair<QColor, QString>> parts[] = {{size_.quantized_bytes, {kQuantized, tr("quantized")}},
                                                                      {size_.lora_bytes, {kLora, tr("LoRA")}},
                                                                      {size_.untouched_bytes, {kUntouched, tr("other")}}};
    for (const auto& [bytes, look] : parts) {
        const QRectF r(QPointF(x_of(at), bar.top()), QPointF(x_of(at + bytes), bar.bottom()));
        at += bytes;
        if (r.width() <= 0) continue;
        // The label only where it fits and the budget marker (3 px) does not cross its text.
        const double tw = fm.horizontalAdvance(look.second);
        const double tx = r.center().x() - tw / 2;
        const bool crossed = marker >= tx - 3 && marker <= tx + tw + 3;
        out.push_back({r, look.first, look.second, tw + 6 <= r.width() && !crossed});
    }
    return out;
}

QStringList BudgetBar::shownLabels() const {
    QStringList l;
    for (const Segment& s : segments())
        if (s.label_shown) l << s.label;
    return l;
}

void BudgetBar::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing, false);
    const QFontMetrics fm = fontMetrics();
    const QPalette pal = palette();
    const QColor text = pal.color(QPalette::WindowText);
    const int em = fm.height();
    const QRectF bar(2, 2, std::max(4, width() - 4), em);
    const QRectF line(2, bar.bottom() + em / 3, std::max(4, width() - 4), em);

    // Track: the full scale, framed.
    p.fillRect(bar, pal.color(QPalette::Base));
    const uint64_t scale = std::max({size_.fp16_bytes, budget_, size_.total_bytes, uint64_t(1)});
    auto x_of = [&](uint64_t bytes) { return bar.left() + bar.width() * double(bytes) / double(scale); };

    for (const Segment& s : segments()) {
        p.fillRect(s.rect, s.color);
        if (s.label_shown) {
            p.setPen(s.color.lightnessF() > 0.6 ? Qt::black : Qt::white);
            p.drawText(s.rect, Qt::AlignCenter, s.label);
        }
    }
    // Over budget: the part beyond the budget hatched red.
    if (overBudget()) {
        const QRectF over(QPointF(x_of(budget_), bar.top()), QPointF(x_of(size_.total_bytes), bar.bottom()));
        p.fillRect(over, QBrush(kOver, Qt::BDiagPattern));
        p.fillRect(over, QColor(kOver.red(), kOver.green(), kOver.blue(), 90));
    }
    p.setPen(QPen(pal.color(QPalette::Mid), 1));
    p.setBrush(Qt::NoBrush);
    p.drawRect(bar.adjusted(0, 0, -1, -1));
    // fp16 reference when the scale goes beyond it (budget or total larger), then the budget marker.
    if (size_.fp16_bytes > 0 && size_.fp16_bytes < scale) {
        p.setPen(QPen(text, 1, Qt::DotLine));
        p.drawLine(QPointF(x_of(size_.fp16_bytes), bar.top()), QPointF(x_of(size_.fp16_bytes), bar.bottom()));
    }
    if (budget_ > 0) {   // 3 px wide, kept inside the bar when the budget is the scale's end
        const double x = std::clamp(x_of(budget_), bar.left() + 1.5, bar.right() - 1.5);
        p.setPen(QPen(overBudget() ? kOver : text, 3, Qt::SolidLine, Qt::FlatCap));
        p.drawLine(QPointF(x, bar.top() - 1), QPointF(x, bar.bottom() + 1));
    }

    p.setPen(overBudget() ? kOver : text);
    p.drawText(line, Qt::AlignLeft | Qt::AlignVCenter, fm.elidedText(summaryText(), Qt::ElideRight, int(line.width())));
}

}  // namespace studio
