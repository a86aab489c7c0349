// quant_colors.h: the one table of quantizer -> fill colour + label that the plan grid, its
// legend and any other view colouring weights by quantizer share, so a colour means the same
// thing everywhere. A "quant code" is int(loftq::QuantKind), or kQuantKeep (-1: the weight stays
// in its source dtype) or kQuantEmpty (-2: no tensor in that grid cell).
//
// Colours: hue by bit width (8-bit green, 4-bit blue/teal, 3-bit orange/yellow, 2-bit red/magenta),
// NF and INT of one width differ in hue; all fills are light enough for dark text, and
// textColor() picks black or white by luminance for any fill. Leaves out: painting cells (see
// plan_grid_delegate.h) and any numerics.
#pragma once
#include <QColor>
#include <QString>
#include <QWidget>
#include <vector>

#include "quant/quantizer.h"

namespace studio {

constexpr int kQuantKeep = -1;
constexpr int kQuantEmpty = -2;

struct QuantStyle {
    int code;           // int(QuantKind), kQuantKeep or kQuantEmpty
    QString label;      // "NF4", ..., "INT8", "Keep 16-bit", "(no tensor)"
    QString shortLabel; // "NF4", ..., "keep", ""
    QColor fill;
    bool hatched;       // keep / empty cells are drawn hatched, not filled
};

// Every style in legend order: NF4, NF3, NF2, INT2, INT3, INT4, INT8, keep, empty.
const std::vector<QuantStyle>& quantStyles();
// The style of a code; unknown codes give the empty style.
const QuantStyle& quantStyle(int code);
inline int quantCode(loftq::QuantKind k) { return int(k); }
// Black or white, whichever reads better on `fill`.
QColor textColorOn(const QColor& fill);

// A one-line legend (swatch + label per quantizer, then keep) from the same table, for beside the
// grid. Its size follows the font; it has no state.
class QuantLegend : public QWidget {
    Q_OBJECT
public:
    explicit QuantLegend(QWidget* parent = nullptr);
    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent*) override;
};

}  // namespace studio
