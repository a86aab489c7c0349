// gguf_export.cpp: see gguf_export.h.
#include "train/gguf_export.h"

#include <filesystem>

#include "core/clock.h"
#include "core/error.h"
#include "io/gguf_names.h"
#include "io/gguf_writer.h"
#include "linalg/blas.h"
#include "model/llama_cpu.h"
#include "quant/ggml_types.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {

// GGUF general.file_type (llama.cpp's llama_ftype): what most weights are stored as.
uint32_t file_type(GgufWeightType t) { return t == GgufWeightType::F32 ? 0 : t == GgufWeightType::F16 ? 1 : 7; }
uint32_t ggml_type(GgufWeightType t) {
    return uint32_t(t == GgufWeightType::F32 ? GgmlType::F32 : t == GgufWeightType::F16 ? GgmlType::F16 : GgmlType::Q8_0);
}

bool same_file(const std::string& a, const std::string& b) {
    std::error_code ec;
    return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

}  // namespace

GgufExportResult export_gguf(const GgufExportOptions& opt, const std::function<void(const std::string&)>& say,
                             const CancelToken* cancel) {
    const auto t0 = Clock::now();
    if (opt.out.empty()) throw Error("export-gguf: no output file given");
    for (const std::string& in : {opt.source.model, opt.source.adapter})
        if (!in.empty() && same_file(in, opt.out)) throw Error(opt.out, "", "is the source; refusing to write over an input");
    GeneratorSource src = opt.source;
    src.device = ComputeDevice::Cpu;
    Generator g = load_generator(src, say, cancel);
    auto* m = dynamic_cast<LlamaCpu*>(g.model.get());
    if (!m) throw Error("export-gguf: the model is not on the CPU");
    const LlamaConfig& c = m->config();
    const std::string& where = opt.source.model.empty() ? opt.source.adapter : opt.source.model;
    if (c.qkv_bias) throw Error(where, "", "models with q/k/v biases (Qwen2) are not exported to GGUF yet");
    if (!c.rope_scaling.empty()) throw Error(where, "", "RoPE scaling '" + c.rope_scaling + "' is not exported to GGUF yet");
    const std::optional<ScoredVocab> vocab = g.tok->scored_vocab();
    if (!vocab)
        throw Error(where, "", "the tokenizer (" + g.tok->kind() + ") is not a scored-piece vocabulary; GGUF export "
                               "supports llama2.c, SentencePiece and GGUF 'llama' tokenizers");
    if (int(vocab->pieces.size()) > c.vocab)
        throw Error(where, "", "the tokenizer has " + std::to_string(vocab->pieces.size()) + " tokens, the model " + std::to_string(c.vocab));
    std::vector<std::string> pieces = vocab->pieces;
    std::vector<float> scores = vocab->scores;
    std::vector<int32_t> types = vocab->types;
    for (int i = int(pieces.size()); i < c.vocab; ++i) {   // embedding rows without a token: unused pieces
        pieces.push_back("<unused" + std::to_string(i) + ">");
        scores.push_back(0.f);
        types.push_back(5);
    }

    GgufWriter w;
    const std::string name = !opt.name.empty() ? opt.name : fs::path(where).filename().string();
    w.add_string("general.architecture", "llama");
    w.add_string("general.name", name);
    w.add_u32("general.file_type", file_type(opt.type));
    if (opt.type == GgufWeightType::Q8_0) w.add_u32("general.quantization_version", 2);
    w.add_u32("llama.context_length", uint32_t(c.max_seq));
    w.add_u32("llama.embedding_length", uint32_t(c.dim));
    w.add_u32("llama.block_count", uint32_t(c.n_layers));
    w.add_u32("llama.feed_forward_length", uint32_t(c.hidden));
    w.add_u32("llama.attention.head_count", uint32_t(c.n_heads));
    w.add_u32("llama.attention.head_count_kv", uint32_t(c.n_kv_heads));
    w.add_u32("llama.rope.dimension_count", uint32_t(c.head_dim()));
    w.add_f32("llama.rope.freq_base", c.rope_theta);
    w.add_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    w.add_u32("llama.vocab_size", uint32_t(c.vocab));
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_strings("tokenizer.ggml.tokens", pieces);
    w.add_f32s("tokenizer.ggml.scores", scores);
    w.add_i32s("tokenizer.ggml.token_type", types);
    if (vocab->bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(vocab->bos));
    if (vocab->eos >= 0) w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(vocab->eos));
    if (vocab->unk >= 0) w.add_u32("tokenizer.ggml.unknown_token_id", uint32_t(vocab->unk));
    w.add_bool("tokenizer.ggml.add_bos_token", vocab->bos >= 0);
    w.add_bool("tokenizer.ggml.add_eos_token", false);
    w.add_bool("tokenizer.ggml.add_space_prefix", vocab->add_space_prefix);
    w.add_string("loftq.source", g.description);
    w.add_string("loftq.lora", opt.backbone_only ? "left out (backbone only)" : "merged: W + scale * B A");

    GgufExportResult res;
    res.description = g.description;
    const int64_t C = c.dim, V = c.vocab;
    const uint32_t wt = ggml_type(opt.type);
    auto matrix_type = [&](int64_t in) {
        if (wt == uint32_t(GgmlType::Q8_0) && in % 32 != 0) {
            ++res.f16_fallbacks;
            return uint32_t(GgmlType::F16);
        }
        return wt;
    };
    auto copy = [](const float* src, int64_t n) { return [src, n](float* dst) { std::copy_n(src, n, dst); }; };
    const uint32_t f32 = uint32_t(GgmlType::F32);

    w.add_tensor("token_embd.weight", {V, C}, matrix_type(C), copy(m->embed(), V * C));
    w.add_tensor("output_norm.weight", {C}, f32, copy(m->final_norm(), C));
    if (!c.tied_embeddings) w.add_tensor("output.weight", {V, C}, matrix_type(C), copy(m->lm_head(), V * C));
    for (int l = 0; l < c.n_layers; ++l) {
        const LlamaLayerWeights& lw = m->layer(l);
        const std::string blk = "blk." + std::to_string(l) + ".";
        w.add_tensor(blk + "attn_norm.weight", {C}, f32, copy(lw.attn_norm, C));
        w.add_tensor(blk + "ffn_norm.weight", {C}, f32, copy(lw.ffn_norm, C));
        for (int si = 0; si < kLoraSites; ++si) {
            const LoraSite s = LoraSite(si);
            const int64_t out = lora_site_out(c, s), in = lora_site_in(c, s);
            const LoraSlot& sl = m->slot(l, s);
            const bool merge = !opt.backbone_only && sl.rank > 0;
            res.merged_sites += merge ? 1 : 0;
            // q/k: the interleaved RoPE order llama.cpp's LLAMA architecture expects
            const int heads = s == LoraSite::Q ? c.n_heads : s == LoraSite::K ? c.n_kv_heads : 0;
            const std::string gname = hf_to_gguf_name(lora_module_path(l, s) + ".weight");
            w.add_tensor(gname, {out, in}, matrix_type(in), [m, l, s, out, in, merge, heads, &sl](float* dst) {
                const float* base = m->site_weight_f32(l, s);   // fp32, or a packed site dequantized
                std::vector<float> wm(base, base + out * in);
                // W' = W + scale * B (out x r) A (r x in)
                if (merge) gemm(false, false, out, in, sl.rank, sl.scale, sl.B, sl.rank, sl.A, in, 1.f, wm.data(), in);
                if (heads == 0) {
                    std::copy(wm.begin(), wm.end(), dst);
                    return;
                }
                const int64_t hd = out / heads;
                for (int64_t r = 0; r < out; ++r)
                    std::copy_n(wm.data() + rope_half_row(r, hd) * in, in, dst + r * in);
            });
        }
    }
    res.tensors = int(w.tensor_count());
    if (say) say("writing " + std::to_string(res.tensors) + " tensors to " + opt.out);
    w.write(opt.out, {}, cancel);
    std::error_code ec;
    res.path = fs::absolute(opt.out, ec).string();
    res.bytes = uint64_t(fs::file_size(opt.out, ec));
    res.seconds = since(t0);
    return res;
}

}  // namespace loftq
