// generate.cpp: `loftq generate MODEL [--adapter DIR] --prompt TEXT ...`: text from a checkpoint,
// a LoftQ export or a fine-tune run (train/generate.h), streamed to stdout token by token, the
// prompt first. Loading notes and the closing statistics go to stderr, so stdout holds the text
// alone; --json FILE also writes the token ids and timings (for scripts and tests).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "train/generate.h"

namespace loftq::cli {

namespace {
struct GenerateArgs {
    GeneratorSource src;
    std::string prompt, prompt_file, json_out;
    GenerateOptions opt;
    bool no_bos = false, quiet = false, ignore_eos = false;
};

std::string read_prompt_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path, "", "cannot read the prompt file");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();   // an editor's final newline
    return s;
}

void run_generate(const GenerateArgs& a) {
    GenerateOptions opt = a.opt;
    opt.add_bos = !a.no_bos;
    opt.stop_at_eos = !a.ignore_eos;
    check_sampling(opt.sampling);   // a bad flag fails before a model loads
    const std::string prompt = a.prompt_file.empty() ? a.prompt : read_prompt_file(a.prompt_file);

    auto say = [&](const std::string& line) { if (!a.quiet) std::fprintf(stderr, "%s\n", line.c_str()); };
    Generator g = load_generator(a.src, say);
    say("generating with " + g.description + " on " + g.where);

    CancelToken cancel;
    SigintGuard guard(cancel);
    if (!a.quiet) {
        std::fputs(prompt.c_str(), stdout);
        std::fflush(stdout);
    }
    const GenerateResult r = generate(*g.model, *g.tok, prompt, opt, [](const GeneratedToken& t) {
        std::fputs(t.text.c_str(), stdout);
        std::fflush(stdout);
    }, &cancel);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (!a.quiet)
        std::fprintf(stderr, "[%zu prompt tokens in %.3f s; %zu new tokens, %.1f tokens/s; stopped at %s]\n", r.prompt_ids.size(),
                     r.prefill_seconds, r.ids.size(), r.tokens_per_second(), kGenerateStopNames.name(r.stop));
    if (!a.json_out.empty()) {
        nlohmann::ordered_json j;
        j["model"] = g.description;
        j["device"] = g.where;
        j["prompt"] = prompt;
        j["prompt_ids"] = r.prompt_ids;
        j["ids"] = r.ids;
        j["text"] = r.text;
        j["stop"] = kGenerateStopNames.name(r.stop);
        j["prefill_seconds"] = r.prefill_seconds;
        j["decode_seconds"] = r.decode_seconds;
        j["tokens_per_second"] = r.tokens_per_second();
        write_file_atomic(a.json_out, j.dump(2) + "\n");
    }
}
}  // namespace

void add_generate(CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    CLI::App* sub = app.add_subcommand("generate", "Text from a model, a LoftQ export or a fine-tune run, streamed as it comes");
    sub->add_option("MODEL", a->src.model,
                    "Checkpoint (HF folder, .safetensors, llama2.c .bin, .gguf), LoftQ export, or fine-tune output folder "
                    "(optional with an --adapter that records its base)");
    sub->add_option("--adapter", a->src.adapter,
                    "PEFT adapter folder (OUT/adapter of a fine-tune) or run folder; its base is rebuilt as the run built it")
        ->check(CLI::ExistingDirectory);
    auto* p = sub->add_option("-p,--prompt", a->prompt, "Prompt text (default: empty, i.e. BOS alone)");
    sub->add_option("--prompt-file", a->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile)->excludes(p);
    sub->add_option("-n,--max-tokens", a->opt.max_tokens, "New tokens at most (default 128)")->check(CLI::Range(0, 1 << 24));
    sub->add_option("--temperature", a->opt.sampling.temperature, "Sampling temperature; 0 = greedy (default)")
        ->check(CLI::Range(0.0, 100.0));
    sub->add_option("--top-k", a->opt.sampling.top_k, "Sample among the K most likely tokens (0 = all, default)")
        ->check(CLI::Range(0, 1 << 30));
    sub->add_option("--top-p", a->opt.sampling.top_p, "Nucleus sampling: the most likely tokens holding P of the mass (default 1)")
        ->check(CLI::Range(1e-9, 1.0));
    sub->add_option("--seed", a->opt.sampling.seed, "Sampling seed (default 0)");
    sub->add_flag("--no-bos", a->no_bos, "Do not start the prompt with BOS");
    sub->add_flag("--ignore-eos", a->ignore_eos, "Go on past EOS until --max-tokens");
    sub->add_option("--tokenizer", a->src.tokenizer, "Tokenizer file (default: beside the model, or inside a .gguf)")
        ->check(CLI::ExistingFile);
    sub->add_option("--threads", a->src.threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    sub->add_option("--json", a->json_out, "Also write the ids, text and timings as JSON to this file");
    sub->add_flag("-q,--quiet", a->quiet, "Print only the generated text (no prompt, no notes)");
    add_device_options(sub, a->src.device, "");
    sub->callback([a] {
        if (a->src.model.empty() && a->src.adapter.empty()) throw CLI::ValidationError("MODEL", "give a model or an --adapter");
        run_generate(*a);
    });
}

}  // namespace loftq::cli
