// quant_colors.cpp: see quant_colors.h. The legend lays swatches out left to right and wraps
// to further lines when narrower than its hint (heightForWidth is not used: one or two lines).
#include "quant_colors.h"

#include <QPainter>

namespace studio {

const std::vector<QuantStyle>& quantStyles() {
    using K = loftq::QuantKind;
    static const std::vector<QuantStyle> table = {
        {int(K::NF4), "NF4", "NF4", QColor(0x7e, 0xb0, 0xe3), false},
        {int(K::NF3), "NF3", "NF3", QColor(0xf6, 0xb2, 0x6b), false},
        {int(K::NF2), "NF2", "NF2", QColor(0xe8, 0x7a, 0x7a), false},
        {int(K::INT2), "INT2", "INT2", QColor(0xd3, 0x8f, 0xc4), false},
        {int(K::INT3), "INT3", "INT3", QColor(0xf2, 0xd8, 0x5c), false},
        {int(K::INT4), "INT4", "INT4", QColor(0x7c, 0xcf, 0xc4), false},
        {int(K::INT8), "INT8", "INT8", QColor(0x9c, 0xcf, 0x80), false},
        {kQuantKeep, "Keep 16-bit", "keep", QColor(0xcf, 0xcf, 0xcf), true},
        {kQuantEmpty, "(no tensor)", "", QColor(0, 0, 0, 0), true},
    };
    return table;
}

const QuantStyle& quantStyle(int code) {
    const auto& t = quantStyles();
    for (const QuantStyle& s : t)
        if (s.code == code) return s;
    return t.back();
}

QColor textColorOn(const QColor& fill) {
    if (fill.alpha() < 128) return QColor();  // invalid: caller uses the palette's text colour
    // Rec. 709 luma of the sRGB values; 0.55 leans towards black text on mid tones.
    double y = 0.2126 * fill.redF() + 0.7152 * fill.greenF() + 0.0722 * fill.blueF();
    return y > 0.55 ? QColor(Qt::black) : QColor(Qt::white);
}

QuantLegend::QuantLegend(QWidget* parent) : QWidget(parent) {
    setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Fixed);
    setToolTip(tr("Cell colours of the plan grid: quantizer of each weight; hatched grey = kept in its source dtype"));
}

namespace {
// Legend entries: every style but "empty".
std::vector<const QuantStyle*> legendEntries() {
    std::vector<const QuantStyle*> v;
    for (const QuantStyle& s : quantStyles())
        if (s.code != kQuantEmpty) v.push_back(&s);
    return v;
}
}  // namespace

QSize QuantLegend::sizeHint() const {
    QFontMetrics fm(font());
    int sw = fm.height(), gap = fm.averageCharWidth() * 2, w = 0;
    for (const QuantStyle* s : legendEntries()) w += sw + fm.averageCharWidth() / 2 + fm.horizontalAdvance(s->label) + gap;
    return {w, fm.height() + 4};
}

QSize QuantLegend::minimumSizeHint() const {
    QFontMetrics fm(font());
    return {fm.horizontalAdvance("NF4 NF3 NF2"), fm.height() + 4};
}

void QuantLegend::paintEvent(QPaintEvent*) {
    QPainter p(this);
    QFontMetrics fm(font());
    int sw = fm.height() - 2, gap = fm.averageCharWidth() * 2, line = fm.height() + 4;
    int x = 0, y = 2;
    for (const QuantStyle* s : legendEntries()) {
        int w = sw + fm.averageCharWidth() / 2 + fm.horizontalAdvance(s->label);
        if (x > 0 && x + w > width()) {
            x = 0;
            y += line;
        }
        QRect sq(x, y + 1, sw, sw);
        p.fillRect(sq, s->fill);
        if (s->hatched) p.fillRect(sq, QBrush(QColor(0, 0, 0, 90), Qt::BDiagPattern));
        p.setPen(palette().color(QPalette::Mid));
        p.drawRect(sq.adjusted(0, 0, -1, -1));
        p.setPen(palette().color(QPalette::WindowText));
        p.drawText(QRect(x + sw + fm.averageCharWidth() / 2, y, w, fm.height()), Qt::AlignLeft | Qt::AlignVCenter, s->label);
        x += w + gap;
    }
}

}  // namespace studio
