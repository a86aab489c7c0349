// flow_layout.h: a layout that places its items left to right and wraps to a new row when the
// width runs out (like words in a paragraph), so that a bar of controls never hides any of them
// behind an overflow button in a narrow window. Height follows the width (heightForWidth).
// Items keep their size hints; no stretching.
#pragma once
#include <QLayout>
#include <QList>

namespace studio {

class FlowLayout : public QLayout {
public:
    explicit FlowLayout(QWidget* parent = nullptr, int hspacing = 6, int vspacing = 3);
    ~FlowLayout() override;

    void addItem(QLayoutItem* item) override;
    int count() const override;
    QLayoutItem* itemAt(int index) const override;
    QLayoutItem* takeAt(int index) override;
    Qt::Orientations expandingDirections() const override { return {}; }
    bool hasHeightForWidth() const override { return true; }
    int heightForWidth(int width) const override;
    QSize sizeHint() const override;          // everything on one row
    QSize minimumSize() const override;       // the widest item
    void setGeometry(const QRect& rect) override;

private:
    int place(const QRect& rect, bool apply) const;   // returns the height used
    QList<QLayoutItem*> items_;
    int hspace_, vspace_;
};

}  // namespace studio
