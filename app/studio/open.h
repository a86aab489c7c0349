// open.h: opening a model for the GUI, off the GUI thread: the checkpoint is mapped, its
// tensor list and architecture facts read (no weight data), then the mapping is dropped: the
// jobs open the path again themselves. Also the demo model (`loftq-studio --demo`: the shipped
// stories260K) and the synthetic demo model that tests use for its shape.
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
    // An export (hf or packed) whose files no longer match the sizes and checksums its manifest
    // recorded: one line naming them. It still opens (to look at it); loading it to fine-tune or
    // evaluate refuses it. Empty when it matches, or there is nothing to check.
    QString checksum_problem;
};

// Throws loftq::Error naming the file on any problem. Safe to call from any thread.
OpenedModel open_model(const QString& path);
// The same, never throwing: problems land in OpenedModel::error (for QtConcurrent).
OpenedModel try_open_model(const QString& path);

// The folder of the shipped demo model stories260K (stories260K.bin, tok512.bin, LICENSE,
// SOURCE.md; from resources/models/stories260K): first beside the program, at the path the
// build copies it to and `cmake --install` installs it to (LOFTQ_DEMO_MODEL_REL from the program's
// folder, e.g. ../share/loftq-studio/models/stories260K), else the source tree's copy. Empty
// when neither holds stories260K.bin.
QString shipped_demo_dir();

// The demo model (`loftq-studio --demo`): Karpathy's pretrained stories260K (llama2.c, 5 layers,
// dim 64, vocab 512; MIT). Its two files are copied from shipped_demo_dir() into
// `cache_dir`/stories260K together with its LICENSE and a small generated TinyStories-style corpus
// (demo-stories.txt, for the Fine-tune tab; tok512.bin beside the model is its tokenizer), once
// and again whenever the shipped files differ from the copy (atomically: built in a temporary
// folder, then renamed). Returns the path of the copied stories260K.bin. Throws loftq::Error.
QString ensure_demo_model(const QString& cache_dir);

// The synthetic demo model: a LLaMA-shaped checkpoint (8 layers, hidden 256, GQA 8/4 heads, bf16)
// with structured, non-trivial spectra, plus a byte-level BPE tokenizer (tokenizer.bin) and a
// small story corpus (demo-stories.txt), generated once into `cache_dir` (atomically). The
// demo before stories260K shipped; the tests use it for its size. Returns its folder. Throws
// loftq::Error.
QString ensure_synthetic_demo(const QString& cache_dir);

}  // namespace studio
