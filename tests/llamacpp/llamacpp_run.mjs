#!/usr/bin/env node
// Runs a GGUF model through the real llama.cpp (prebuilt CPU binaries shipped
// by node-llama-cpp) and prints ONE JSON object on stdout: greedy
// continuations of some prompts and the per-token NLL of an evaluation text.
//
//   node llamacpp_run.mjs --model FILE.gguf --request REQ.json
//
// See README.md for the request/response format. llama.cpp's own logs go to
// stderr (errors only); on any failure a one-line message goes to stderr and
// the exit status is non-zero.
import fs from "node:fs";

// Anything a library prints with console.log must not pollute stdout.
console.log = console.info = console.warn = (...a) => process.stderr.write(a.join(" ") + "\n");

// llama.cpp log lines (errors only) are buffered: on failure the last one is
// folded into our single-line message, on success they are copied to stderr.
const llamaLogs = [];

function fail(msg, code = 1) {
    let line = String(msg).split("\n")[0];
    if (llamaLogs.length) line += ` (llama.cpp: ${llamaLogs.filter((l) => /error/i.test(l)).at(0) ?? llamaLogs.at(-1)})`;
    process.stderr.write(`llamacpp_run: ${line.replace(/[^\x20-\x7e]/g, "?")}\n`);
    process.exit(code);
}

// Imported dynamically so that a missing install is a clear error (exit 3),
// which a caller can treat as "skip" rather than "fail".
let getLlama, LlamaLogLevel;
try {
    ({ getLlama, LlamaLogLevel } = await import("node-llama-cpp"));
} catch (e) {
    fail(`node-llama-cpp is not installed (run: npm ci --prefix tests/llamacpp): ${e.message}`, 3);
}

function parseArgs(argv) {
    const args = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (argv[i] !== "--model" && argv[i] !== "--request") fail(`unknown argument ${argv[i]}`);
        if (argv[i + 1] == null) fail(`missing value for ${argv[i]}`);
        args[argv[i].slice(2)] = argv[i + 1];
    }
    if (!args.model || !args.request) fail("usage: node llamacpp_run.mjs --model FILE.gguf --request REQ.json");
    return args;
}

// Sampling options for the one token generated after an input token:
// temperature 0 makes node-llama-cpp's sampler chain a lone llama.cpp greedy
// sampler (no top-k/top-p/min-p, no repeat penalty, no token bias), so
// `probabilities` is the plain softmax of the raw logits over the whole
// vocabulary and `token` is its argmax.
const GREEDY = { temperature: 0 };

async function main() {
    const args = parseArgs(process.argv.slice(2));
    let req;
    try {
        req = JSON.parse(fs.readFileSync(args.request, "utf8"));
    } catch (e) {
        fail(`cannot read request ${args.request}: ${e.message}`);
    }
    const prompts = req.prompts ?? [];
    const maxTokens = req.max_tokens ?? 24;
    const addBos = req.add_bos ?? true;
    const threads = req.threads ?? 1;
    // KV cache element type: llama.cpp defaults to F16; F32 keeps the cache
    // exact so llama.cpp matches an all-float32 engine more tightly.
    const kvType = String(req.kv_cache_type ?? "f32").toUpperCase();

    // Check the file ourselves: a clear message instead of a native error.
    if (!fs.existsSync(args.model) || !fs.statSync(args.model).isFile()) fail(`model file not found: ${args.model}`);

    const llama = await getLlama({
        gpu: false, build: "never", progressLogs: false, maxThreads: threads,
        logLevel: LlamaLogLevel.error,
        logger: (level, message) => llamaLogs.push(message.trim()),
    });
    let model;
    try {
        model = await llama.loadModel({ modelPath: args.model, gpuLayers: 0 });
    } catch (e) {
        fail(`cannot load model ${args.model}: ${e.message}`);
    }

    const bos = model.tokens.bos, eos = model.tokens.eos;
    // Tokenize as plain text (special tokens not parsed); BOS added by us.
    const tok = (text) => [...(addBos ? [bos] : []), ...model.tokenize(text, false)];
    const promptToks = prompts.map(tok);
    const evalToks = req.eval_text != null ? tok(req.eval_text) : null;

    // One sequence; no context shift ever happens because everything fits.
    const needed = Math.max(1, ...promptToks.map((t) => t.length + maxTokens), evalToks?.length ?? 0);
    const contextSize = Math.max(needed, model.trainContextSize);
    const context = await model.createContext({
        contextSize, sequences: 1, threads, batchSize: Math.min(contextSize, 512), flashAttention: false,
        experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
    });
    const seq = context.getSequence();
    if (context.contextSize < needed) fail(`context size ${context.contextSize} < needed ${needed}`);

    const out = {
        llama_cpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
        node_llama_cpp: JSON.parse(fs.readFileSync(new URL("./node_modules/node-llama-cpp/package.json", import.meta.url))).version,
        n_vocab: model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? null,
        bos, eos, kv_cache_type: kvType.toLowerCase(), context_size: context.contextSize,
        prompts: [],
    };

    // Greedy generation with the KV cache: evaluate the prompt, asking for a
    // token after its last position, then feed back each generated token.
    for (let p = 0; p < prompts.length; p++) {
        await seq.clearHistory();
        let input = promptToks[p].map((t, i, a) => (i === a.length - 1 ? [t, { generateNext: { token: true, options: GREEDY } }] : t));
        const gen = [];
        let stop = "length";
        while (gen.length < maxTokens) {
            const res = await seq.controlledEvaluate(input);
            const next = res[input.length - 1]?.next?.token;
            if (next == null) fail("llama.cpp produced no token");
            if (next === eos) { stop = "eos"; break; } // EOS is not part of "tokens"
            gen.push(next);
            input = [[next, { generateNext: { token: true, options: GREEDY } }]];
        }
        out.prompts.push({
            prompt: prompts[p], prompt_tokens: promptToks[p], tokens: gen,
            text: model.detokenize(gen, false, promptToks[p]), stop,
        });
    }

    // Evaluation: one pass over the text with the full next-token distribution
    // at every position but the last; nll[i] = -ln p(tokens[i+1] | tokens[..i]).
    if (evalToks) {
        await seq.clearHistory();
        const input = evalToks.map((t, i) => (i < evalToks.length - 1 ? [t, { generateNext: { probabilities: true, options: GREEDY } }] : t));
        const res = await seq.controlledEvaluate(input);
        const nll = [];
        let maxSumErr = 0;
        for (let i = 0; i + 1 < evalToks.length; i++) {
            const probs = res[i]?.next?.probabilities;
            if (!probs) fail(`no probabilities at position ${i}`);
            if (out.n_vocab != null && probs.size !== out.n_vocab) fail(`probabilities cover ${probs.size} tokens, vocab has ${out.n_vocab}`);
            let sum = 0;
            for (const v of probs.values()) sum += v;
            maxSumErr = Math.max(maxSumErr, Math.abs(sum - 1));
            nll.push(-Math.log(probs.get(evalToks[i + 1]) ?? 0));
        }
        // Sanity: a true softmax over the whole vocabulary sums to one.
        if (maxSumErr > 1e-3) fail(`probabilities do not sum to 1 (max error ${maxSumErr})`);
        out.eval = {
            tokens: evalToks, nll,
            mean_nll: nll.length ? nll.reduce((a, b) => a + b, 0) / nll.length : null,
            max_prob_sum_error: maxSumErr,
        };
    }

    await context.dispose();
    await model.dispose();
    await llama.dispose();
    for (const l of llamaLogs) process.stderr.write(l + "\n");
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => fail(e?.message ?? e));
