// help.cpp: see studio/help.h.
#include "studio/help.h"

#include <QAction>
#include <QCoreApplication>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QTabWidget>
#include <QTextBrowser>
#include <QUrl>
#include <QVBoxLayout>

#include "quant_colors.h"

namespace studio {

namespace {

QString plain(QString menu_text) { return menu_text.remove('&').remove(QStringLiteral("…")).trimmed(); }

QTextBrowser* html_page(QWidget* parent, const QString& html) {
    auto* b = new QTextBrowser(parent);
    b->setOpenExternalLinks(true);
    b->setHtml(html);
    return b;
}

// One document the help links to: file name and what it is for.
struct Doc {
    const char* file;
    const char* what;
};
const Doc kDocs[] = {
    {"README.md", "installing, the commands, the workbench at a glance"},
    {"MIXED-PRECISION.md", "calibration, the sensitivity sweep, the allocator and its Pareto front"},
    {"PLAN-FORMAT.md", "plan files: defaults, rules, overrides"},
    {"FORMAT.md", "the export layouts (HF LoftQ, packed, bitsandbytes) and their sizes on disk"},
    {"EXPERIMENTS.md", "the paper's comparisons reproduced on real models"},
    {"PERFORMANCE.md", "speed and memory, with the commands that measured them"},
};

}  // namespace

QString HelpDialog::docsDir() {
    const QString installed = QDir::cleanPath(QCoreApplication::applicationDirPath() + "/" LOFTQ_DOCS_REL);
    if (QFileInfo(installed + "/MIXED-PRECISION.md").isFile()) return installed;
    return QStringLiteral(LOFTQ_DOCS_SOURCE_DIR);
}

HelpDialog::HelpDialog(QWidget* actions_of, QWidget* parent) : QDialog(parent) {
    setWindowTitle(tr("LoftQ Studio Help"));
    setObjectName("HelpDialog");
    const int em = fontMetrics().height();
    resize(46 * em, 34 * em);
    tabs_ = new QTabWidget(this);

    pages_[0] = html_page(this, tr(
        "<h3>A first run, in six steps</h3><ol>"
        "<li><b>Open a model</b> (File &gt; Open Model: a Hugging Face folder, a .safetensors file or a llama2.c .bin), "
        "or File &gt; Open Demo Model: the real stories260K, small enough to try everything in seconds.</li>"
        "<li><b>Plan</b>: the grid has a row per decoder layer and a column per projection. Select cells (drag, or click a "
        "row or column header), choose quantizer, block, rank r and steps T in the bar above it, and Apply (Return). "
        "The bar under the grid says what the plan weighs; every edit can be undone.</li>"
        "<li><b>Run</b> (F5, or Shift+F5 for the selected cells): every weight is decomposed as "
        "Q = quantize(W &minus; AB<sup>T</sup>), AB<sup>T</sup> = rank-r SVD(W &minus; Q), T times. <i>Error vs step</i> "
        "plots ‖W&minus;Q&minus;BA‖/‖W‖ after each step for the selected cells, its QLoRA baseline (T = 0) dashed.</li>"
        "<li><b>Read the results</b>: <i>Final error</i> is a heatmap of that error per layer and module; <i>Improvement "
        "over QLoRA</i> how much LoftQ gained. A result whose settings you changed since is marked stale until run again.</li>"
        "<li><b>Mixed precision</b> (the tab beside Error vs step): Sweep measures every weight at every candidate "
        "setting, then the chart shows the best plan for each size; click a point or use the budget slider to load one. "
        "With a calibration text the errors are those of each projection's output.</li>"
        "<li><b>Fine-tune</b> (the Fine-tune tab) from the current plan, an export or a uniform start, with the original "
        "model's loss as the reference line; <b>Export</b> (Ctrl+E) writes a checkpoint transformers + PEFT load.</li>"
        "</ol>"));
    pages_[0]->setObjectName("HelpGettingStarted");

    QString legend = tr("<h3>Colours</h3><table cellpadding='3'>");
    for (const QuantStyle& st : quantStyles()) {
        if (st.code == kQuantEmpty) continue;
        legend += QStringLiteral("<tr><td style='background-color:%1'>&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;</td><td>%2</td></tr>")
                      .arg(st.fill.name(), st.label.toHtmlEscaped());
    }
    legend += tr("</table><p>A hatched cell is kept in 16-bit (not quantized); an empty one has no such tensor.</p>"
                 "<h3>A cell</h3><p><b>r16 T5</b>: LoRA rank and LoftQ steps; the block size is in the tooltip. A bold "
                 "outline is the selection, a dashed yellow one the cells the rule you are editing would touch.</p>"
                 "<h3>The bar under a cell</h3><p>After a run, a bar along the bottom of the cell is the final error as a "
                 "fraction of the QLoRA baseline: the shorter, the more LoftQ gained. A red corner means LoftQ ended worse "
                 "than QLoRA for that weight. A faint dotted bar is a stale result (the cell's settings changed since).</p>"
                 "<h3>The budget bar</h3><p>Below the grid: quantized codes and scales (blue), LoRA adapters at 16-bit "
                 "(orange) and the tensors left as they are (grey), scaled to the fp16 model or the budget; the tooltip has "
                 "every number in bytes and what an export folder really takes on disk.</p>");
    pages_[1] = html_page(this, legend);
    pages_[1]->setObjectName("HelpGrid");

    QString keys = tr("<h3>Keyboard shortcuts</h3><table cellpadding='2'>");
    for (QAction* a : actions_of ? actions_of->findChildren<QAction*>() : QList<QAction*>()) {
        if (a->shortcut().isEmpty() || a->text().isEmpty()) continue;
        const QString row = plain(a->text()) + '\t' + a->shortcut().toString(QKeySequence::NativeText);
        if (shortcuts_.contains(row)) continue;
        shortcuts_ << row;
        keys += QStringLiteral("<tr><td>%1</td><td><b>%2</b></td></tr>")
                    .arg(plain(a->text()).toHtmlEscaped(), a->shortcut().toString(QKeySequence::NativeText).toHtmlEscaped());
    }
    keys += tr("<tr><td>Apply the edit bar to the selection</td><td><b>Return</b></td></tr>"
               "<tr><td>Remove a fine-tuning run (runs table)</td><td><b>Del</b></td></tr>"
               "<tr><td>Reset a chart's view</td><td><b>double-click</b></td></tr></table>");
    pages_[2] = html_page(this, keys);
    pages_[2]->setObjectName("HelpShortcuts");

    const QString dir = docsDir();
    QString docs = tr("<h3>Documentation</h3><p>In %1:</p><ul>").arg(QDir::toNativeSeparators(dir).toHtmlEscaped());
    for (const Doc& d : kDocs) {
        QString path = QDir(dir).filePath(d.file);
        if (!QFileInfo(path).isFile()) path = QDir(dir).filePath("../" + QString(d.file));   // README beside docs/
        if (!QFileInfo(path).isFile()) continue;
        path = QFileInfo(path).canonicalFilePath();
        docs_ << path;
        docs += QStringLiteral("<li><a href='%1'>%2</a>: %3</li>")
                    .arg(QUrl::fromLocalFile(path).toString(), QString(d.file), tr(d.what).toHtmlEscaped());
    }
    docs += tr("</ul><p>The method: Li et al., <i>LoftQ: LoRA-Fine-Tuning-aware Quantization for Large Language Models</i>, "
               "arXiv 2310.08659.</p>");
    pages_[3] = html_page(this, docs);
    pages_[3]->setObjectName("HelpDocumentation");

    tabs_->addTab(pages_[0], tr("Getting started"));
    tabs_->addTab(pages_[1], tr("Reading the grid"));
    tabs_->addTab(pages_[2], tr("Shortcuts"));
    tabs_->addTab(pages_[3], tr("Documentation"));
    auto* lay = new QVBoxLayout(this);
    lay->addWidget(tabs_);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    lay->addWidget(buttons);
}

void HelpDialog::showPage(Page p) { tabs_->setCurrentIndex(int(p)); }
HelpDialog::Page HelpDialog::page() const { return Page(tabs_->currentIndex()); }
QString HelpDialog::pageText(Page p) const { return pages_[int(p)]->toPlainText(); }
QStringList HelpDialog::shortcutRows() const { return shortcuts_; }
QStringList HelpDialog::documentationFiles() const { return docs_; }

}  // namespace studio
