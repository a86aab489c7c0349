// open.cpp: see studio/open.h.
#include "studio/open.h"

#include "export/verify.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QStringList>
#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/packed_reader.h"
#include "core/fsutil.h"
#include "io/synthetic_model.h"
#include "train/demo_data.h"
#include "export/summary.h"
#include "export/verify.h"
#include "loftq/job.h"

// Where the shipped demo model lies: relative to the program's folder (the build copies it there,
// and `cmake --install` installs it there), and in the source tree (app/CMakeLists.txt sets both).
#ifndef LOFTQ_DEMO_MODEL_REL
#define LOFTQ_DEMO_MODEL_REL "../share/loftq-studio/models/stories260K"
#endif
#ifndef LOFTQ_DEMO_MODEL_SOURCE_DIR
#define LOFTQ_DEMO_MODEL_SOURCE_DIR "resources/models/stories260K"
#endif

namespace studio {

namespace {
QString bytes_text(uint64_t b) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = double(b);
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        ++u;
    }
    return u == 0 ? QString("%1 B").arg(b) : QString("%1 %2").arg(v, 0, 'f', 2).arg(units[u]);
}
QString count_text(uint64_t n) {
    if (n >= 1'000'000'000ull) return QString("%1 B").arg(double(n) / 1e9, 0, 'f', 2);
    if (n >= 1'000'000ull) return QString("%1 M").arg(double(n) / 1e6, 0, 'f', 2);
    if (n >= 1'000ull) return QString("%1 k").arg(double(n) / 1e3, 0, 'f', 1);
    return QString::number(n);
}
const char* kind_text(loftq::CheckpointKind k) {
    switch (k) {
    case loftq::CheckpointKind::HFFolder: return "Hugging Face folder";
    case loftq::CheckpointKind::SafetensorsFile: return "single .safetensors";
    case loftq::CheckpointKind::Llama2c: return "llama2.c .bin";
    case loftq::CheckpointKind::Gguf: return "GGUF (llama.cpp)";
    }
    return "?";
}
}  // namespace

OpenedModel open_model(const QString& path) {
    auto ck = loftq::Checkpoint::open(QFileInfo(path).absoluteFilePath().toStdString());
    OpenedModel m;
    m.path = QString::fromStdString(ck->path());
    QFileInfo fi(m.path);
    m.title = fi.isDir() ? fi.fileName() : fi.dir().dirName() + "/" + fi.fileName();
    m.tensors = loftq::tensor_metas(*ck);
    if (loftq::is_packed_checkpoint(*ck)) {
        loftq::ExportSummary es = loftq::read_packed_export(m.path.toStdString());
        m.packed = true;
        m.tensors = es.tensors;
        m.plan = es.plan;
        if (es.has_metrics) m.recorded = std::make_shared<const loftq::QuantizeResult>(std::move(es.result));
    }
    const loftq::ModelConfig& c = ck->config();
    uint64_t params = 0;
    for (const auto& t : ck->tensors()) params += t.numel();
    auto add = [&](const QString& k, const QString& v) { m.facts.append({k, v}); };
    add("Path", m.path);
    add("Format", m.packed ? QString("packed LoftQ export (read-only: fine-tune it, or loftq unpack)") : QString(kind_text(ck->kind())));
    add("Model type", c.model_type.empty() ? QString("(unknown)") : QString::fromStdString(c.model_type));
    add("Layers", QString::number(c.n_layers));
    add("Hidden size", QString::number(c.hidden));
    add("Attention heads", QString("%1 (KV %2)").arg(c.n_heads).arg(c.n_kv_heads));
    add("Intermediate size", QString::number(c.intermediate));
    add("Vocabulary", QString::number(c.vocab));
    add("Tied embeddings", c.tie_word_embeddings ? "yes" : "no");
    if (!c.torch_dtype.empty()) add("torch_dtype", QString::fromStdString(c.torch_dtype));
    add("Parameters", QString("%1 (%2)").arg(count_text(params)).arg(params));
    add("Tensors", QString::number(ck->tensors().size()));
    add("Size on disk", QString("%1 in %2 file(s)").arg(bytes_text(ck->size_on_disk())).arg(ck->files().size()));
    // An export's files against its manifest (every byte read once: this runs off the GUI thread).
    if (ck->kind() == loftq::CheckpointKind::HFFolder && QFileInfo(QDir(m.path).filePath("loftq_metrics.json")).isFile()) {
        const loftq::VerifyReport v = loftq::verify_export(ck->dir());
        if (v.ok()) {
            add("Checksums", QString("%1 files match the export's manifest").arg(v.files_checked));
        } else if (v.status == loftq::VerifyReport::Status::Failed) {
            QStringList what;
            for (const auto& p : v.problems) what << QString::fromStdString(p.file + ": " + p.what);
            m.checksum_problem = QString("%1: files differ from the export's manifest (fine-tuning it is refused; "
                                         "loftq verify lists them): %2").arg(m.path, what.join("; "));
            add("Checksums", QString("CHANGED: %1").arg(what.join("; ")));
        } else {
            add("Checksums", QString::fromStdString(v.cannot_verify_reason()));
        }
    }
    return m;
}

OpenedModel try_open_model(const QString& path) {
    try {
        return open_model(path);
    } catch (const std::exception& e) {
        OpenedModel m;
        m.path = path;
        m.error = QString::fromStdString(e.what());
        return m;
    }
}

namespace {
// The files of the shipped demo that the cache copy holds (SOURCE.md stays with the program).
const char* const kDemoFiles[] = {"stories260K.bin", "tok512.bin", "LICENSE"};
constexpr uint64_t kDemoSeed = 20231008;  // fixed: every user gets the same corpus

bool same_bytes(const QString& a, const QString& b) {
    QFile fa(a), fb(b);
    if (fa.size() != fb.size() || !fa.open(QIODevice::ReadOnly) || !fb.open(QIODevice::ReadOnly)) return false;
    return fa.readAll() == fb.readAll();
}
}  // namespace

QString shipped_demo_dir() {
    QStringList dirs;
    const QString app_dir = QCoreApplication::applicationDirPath();
    if (!app_dir.isEmpty()) dirs << QDir::cleanPath(app_dir + "/" LOFTQ_DEMO_MODEL_REL);
    dirs << QStringLiteral(LOFTQ_DEMO_MODEL_SOURCE_DIR);
    for (const QString& d : dirs)
        if (QFileInfo(d + "/stories260K.bin").isFile() && QFileInfo(d + "/tok512.bin").isFile()) return d;
    return {};
}

QString ensure_demo_model(const QString& cache_dir) {
    namespace fs = std::filesystem;
    const QString src = shipped_demo_dir();
    if (src.isEmpty())
        throw loftq::Error(QDir::cleanPath(QCoreApplication::applicationDirPath() + "/" LOFTQ_DEMO_MODEL_REL).toStdString(), "",
                           "the demo model stories260K is not installed here (nor in the source tree at " LOFTQ_DEMO_MODEL_SOURCE_DIR
                           "): reinstall loftq-studio, or open a model with File > Open");
    const QString dir = QDir(cache_dir).filePath("stories260K");
    const QString model = dir + "/stories260K.bin";
    bool fresh = QFileInfo(dir + "/demo-stories.txt").isFile();
    for (const char* f : kDemoFiles)
        fresh = fresh && (!QFileInfo::exists(src + "/" + f) || same_bytes(src + "/" + f, dir + "/" + f));
    if (fresh) return model;
    QDir().mkpath(cache_dir);
    const QString tmp = dir + QString(".building-%1").arg(QCoreApplication::applicationPid());
    std::error_code ec;
    fs::remove_all(tmp.toStdString(), ec);
    fs::create_directories(tmp.toStdString(), ec);
    for (const char* f : kDemoFiles) {
        if (!QFileInfo::exists(src + "/" + f)) continue;  // LICENSE: only where it was shipped
        fs::copy_file((src + "/" + f).toStdString(), (tmp + "/" + f).toStdString(), fs::copy_options::overwrite_existing, ec);
        if (ec) throw loftq::Error((src + "/" + f).toStdString(), "", "cannot copy the demo model into " + tmp.toStdString() + ": " + ec.message());
        // The install's copy may be read-only; the cache's need not be.
        fs::permissions((tmp + "/" + f).toStdString(), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    }
    // A small TinyStories-style corpus, so that the Fine-tune tab works on the demo out of the box.
    loftq::write_file_atomic((tmp + "/demo-stories.txt").toStdString(), loftq::demo_corpus(4000, kDemoSeed));
    fs::remove_all(dir.toStdString(), ec);  // an older copy, or a half-built leftover
    fs::rename(tmp.toStdString(), dir.toStdString(), ec);
    if (ec && !QFileInfo::exists(model))
        throw loftq::Error(dir.toStdString(), "", "cannot move the demo model into place: " + ec.message());
    fs::remove_all(tmp.toStdString(), ec);  // another instance won the race
    return model;
}

QString ensure_synthetic_demo(const QString& cache_dir) {
    namespace fs = std::filesystem;
    const QString dir = QDir(cache_dir).filePath("demo-llama-8x256-v2");
    if (QFileInfo::exists(dir + "/config.json") && QFileInfo::exists(dir + "/model.safetensors")) return dir;
    QDir().mkpath(cache_dir);
    const QString tmp = dir + QString(".building-%1").arg(QCoreApplication::applicationPid());
    std::error_code ec;
    fs::remove_all(tmp.toStdString(), ec);
    loftq::SyntheticSpec s;
    s.layers = 8;
    s.hidden = 256;
    s.intermediate = 688;
    s.heads = 8;
    s.kv_heads = 4;
    s.vocab = 512;
    s.dtype = loftq::DType::BF16;
    s.seed = 20231008;  // fixed: every user gets the same demo
    loftq::write_synthetic_model(tmp.toStdString(), s);
    // A tokenizer and a small corpus, so that the Fine-tune tab works on the demo too.
    const std::string corpus = loftq::demo_corpus(4000, s.seed);
    loftq::write_demo_tokenizer((tmp + "/tokenizer.bin").toStdString(), corpus, s.vocab);
    loftq::write_file_atomic((tmp + "/demo-stories.txt").toStdString(), corpus);
    fs::remove_all(dir.toStdString(), ec);  // a half-built leftover from an older crash, if any
    fs::rename(tmp.toStdString(), dir.toStdString(), ec);
    if (ec && !QFileInfo::exists(dir + "/config.json"))
        throw loftq::Error(dir.toStdString(), "", "cannot move the demo model into place: " + ec.message());
    fs::remove_all(tmp.toStdString(), ec);  // another instance won the race
    return dir;
}

}  // namespace studio
