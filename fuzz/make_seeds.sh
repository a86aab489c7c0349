#!/usr/bin/env bash
# make_seeds.sh LOFTQ: writes the seed corpora under fuzz/corpus/ from the `loftq` CLI (LOFTQ is its
# path, e.g. build/bin/loftq) and python3 (for the hand-made llama2.c checkpoint, sentencepiece
# model and tokenizer.json). The tiny model has the shapes of fuzz/fixtures.cpp, so that a seed
# shard index or export JSON matches the fixture it is fuzzed against. Seeds are committed; run
# this only to remake them. Inputs found by fuzzing are added beside them by hand (see
# docs/RELIABILITY.md).
set -euo pipefail
loftq=$(realpath "$1")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
c=corpus
mkdir -p $c/{safetensors,shard_index,config,llama2c,packed,plan,tok_llama2c,tok_spm,tok_hf,dataset,export_json,gguf}
tiny=(--layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 32)

"$loftq" make-demo "${tiny[@]}" "$tmp/bf16" >/dev/null
"$loftq" make-demo "${tiny[@]}" --dtype f32 "$tmp/f32" >/dev/null
"$loftq" make-demo --layers 1 --hidden 8 --intermediate 16 --heads 2 --kv-heads 2 --vocab 8 --dtype f16 "$tmp/f16" >/dev/null
"$loftq" make-demo "${tiny[@]}" --max-shard-size 1500 "$tmp/sharded" >/dev/null
cp "$tmp/bf16/model.safetensors" $c/safetensors/tiny-bf16.safetensors
cp "$tmp/f32/model.safetensors" $c/safetensors/tiny-f32.safetensors
cp "$tmp/f16/model.safetensors" $c/safetensors/tiny-f16.safetensors
cp "$tmp/sharded/model.safetensors.index.json" $c/shard_index/index.json
cp "$tmp/bf16/config.json" $c/config/tiny.json

"$loftq" quantize "$tmp/bf16" --out "$tmp/packed" --format packed --block 16 --rank 2 --iters 1 -q --no-checksums
"$loftq" quantize "$tmp/bf16" --out "$tmp/packed-dq" --format packed --quant nf2 --block 16 --rank 2 --iters 1 --double-quant -q --no-checksums
"$loftq" quantize "$tmp/bf16" --out "$tmp/packed-int3" --format packed --quant int3 --block 8 --rank 0 --iters 0 -q --no-checksums
cp "$tmp/packed/model.safetensors" $c/packed/nf4.safetensors
cp "$tmp/packed-dq/model.safetensors" $c/packed/nf2-double-quant.safetensors
cp "$tmp/packed-int3/model.safetensors" $c/packed/int3-qlora.safetensors

"$loftq" quantize "$tmp/bf16" --out "$tmp/hf" --block 16 --rank 2 --iters 1 -q --no-checksums
{ printf '\x00'; cat "$tmp/hf/loftq_init/adapter_config.json"; } > $c/export_json/adapter_config
{ printf '\x01'; cat "$tmp/hf/loftq_metrics.json"; } > $c/export_json/metrics

cp ../resources/plans/*.loftq.json $c/plan/
cp ../resources/models/stories260K/tok512.bin $c/tok_llama2c/tok512.bin
python3 make_seeds.py "$c"
echo "seeds written under $(pwd)/$c"
