// studio_open.h: opening a model for the GUI, off the GUI thread: the checkpoint is mapped, its
// tensor list and architecture facts read (no weight data), then the mapping is dropped: the
// jobs open the path again themselves. Also the built-in demo model (`loftq-studio --demo`).
#pragma once
#include <QList>
#include <QPair>
#include <QString>
#include <vector>

#include <memory>

#include "loftq/job.h"
#include "loftq/plan.h"

namespace studio {

struct OpenedModel {
    QString path;                                  // as opened (absolute)
    QString title;                                 // short name for the window title
    std::vector<loftq::TensorMeta> tensors;
    QList<QPair<QString, QString>> facts;          // label, value: for the overview
    QString error;                                 // set instead of the above when opening failed
    // A packed LoftQ export: its logical tensors (above), the plan it was made with (every
    // weight explicit) and, when it has loftq_metrics.json, the recorded run.
    bool packed = false;
    loftq::Plan plan;
    std::shared_ptr<const loftq::QuantizeResult> recorded;
};

// Throws loftq::Error naming the file on any problem. Safe to call from any thread.
OpenedModel open_model(const QString& path);
// The same, never throwing: problems land in OpenedModel::error (for QtConcurrent).
OpenedModel try_open_model(const QString& path);

// The demo model: a LLaMA-shaped checkpoint (8 layers, hidden 256, GQA 8/4 heads, bf16) with
// structured, non-trivial spectra, plus a byte-level BPE tokenizer (tokenizer.bin) and a small
// story corpus (demo-stories.txt) for the Fine-tune tab, generated once into `cache_dir` (atomically: built in a
// temporary folder, then renamed). Returns its folder. Throws loftq::Error.
QString ensure_demo_model(const QString& cache_dir);

}  // namespace studio
