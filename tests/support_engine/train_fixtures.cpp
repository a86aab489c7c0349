// train_fixtures.cpp: see train_fixtures.h.
#include "train_fixtures.h"

#include "core/fsutil.h"
#include "io/synthetic_model.h"
#include "test_support.h"
#include "train/demo_data.h"

namespace loftq::test {

Synth make_synth(const std::string& tag, int hidden, int intermediate, int layers) {
    Synth s;
    s.root = make_temp_dir(tag);
    s.model = s.root + "/model";
    SyntheticSpec spec;
    spec.layers = layers;
    spec.hidden = hidden;
    spec.intermediate = intermediate;
    spec.heads = 4;
    spec.kv_heads = 2;
    spec.vocab = 512;
    spec.dtype = DType::F32;
    write_synthetic_model(s.model, spec);
    const std::string corpus = demo_corpus(500, 7);
    write_demo_tokenizer(s.model + "/tokenizer.bin", corpus, 512);
    s.data = s.root + "/train.txt";
    s.eval = s.root + "/eval.txt";
    write_file_atomic(s.data, corpus);
    write_file_atomic(s.eval, demo_corpus(120, 99));
    return s;
}

nlohmann::json llama_config_json(const std::string& model_type, int hidden, int intermediate, int layers, int heads,
                                 int kv_heads, int vocab, bool tied, int max_positions) {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", model_type},
            {"hidden_size", hidden},
            {"intermediate_size", intermediate},
            {"num_hidden_layers", layers},
            {"num_attention_heads", heads},
            {"num_key_value_heads", kv_heads},
            {"vocab_size", vocab},
            {"max_position_embeddings", max_positions},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},
            {"hidden_act", "silu"},
            {"tie_word_embeddings", tied},
            {"torch_dtype", "float32"}};
}

}  // namespace loftq::test
