// unpack.h: a packed LoftQ export (export/packed.h) back into the Hugging Face LoftQ layout
// (export/hf.h): the backbone with every quantized weight dequantized (table[code] * scale, the
// engine's Q when the scales are not double-quantized) in the source dtype recorded in the
// metadata, all other tensors copied bit-exactly, in the source order and shard limit the
// export recorded; config, tokenizer files, loftq_init/ (adapter_config's
// base_model_name_or_path pointed at the new folder) and the metrics copied. Written atomically
// (staged beside the output and swapped in whole, fsutil.h StagedOutput), metrics last. For an export without double
// quantization the result equals `loftq quantize --format hf` byte for byte (model weights and
// adapter tensors).
#pragma once
#include <string>
#include <vector>

namespace loftq {

// Throws loftq::Error for a corrupt export (see packed_reader.h), an output folder that is or
// holds the input, or a non-empty output folder without `force`. With `verify`, first checks
// the packed folder against its manifest's checksums (export/verify.h) and refuses a missing or
// changed file, naming it; an export from before checksums were recorded is unpacked unchecked.
// The unpacked folder's loftq_metrics.json is the packed one's with its own "outputs". Returns
// the files written.
std::vector<std::string> unpack_packed(const std::string& packed_dir, const std::string& out_dir, bool force,
                                       bool verify = true);

}  // namespace loftq
