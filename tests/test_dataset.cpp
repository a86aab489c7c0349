// test_dataset.cpp: tests of engine/train/dataset: every format on small files written here with
// a character-level tokenizer (id = byte + 3, BOS 1, EOS 2), so tokens/targets alignment is
// checked position by position: targets are the next tokens, prompt positions and padding -1,
// windows of plain text overlap by one token; truncation and dropped examples with warnings;
// the seeded split (sizes, determinism, disjoint); errors naming file and line. With ../shared:
// the first 20 GSM8K lines through the real tokenizers, loss on the answer tokens only.
// Leaves out: the tokenizers themselves (test_tokenizer).
#include <QtTest>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "expect_error.h"
#include "test_support.h"
#include "train/dataset.h"

using namespace loftq;
using loftq::test::read_file;
using loftq::test::write_file;
using json = nlohmann::json;

namespace {

// One token per byte: id = byte + 3; BOS 1, EOS 2 (bos = -1 when `no_bos`).
class CharTok : public Tokenizer {
public:
    explicit CharTok(bool no_bos = false) : no_bos_(no_bos) {}
    std::vector<int> encode(const std::string& text, bool bos, bool eos) const override {
        std::vector<int> ids;
        if (bos && !no_bos_) ids.push_back(1);
        for (unsigned char c : text) ids.push_back(int(c) + 3);
        if (eos) ids.push_back(2);
        return ids;
    }
    std::string decode(const std::vector<int>& ids) const override {
        std::string s;
        for (int id : ids) s += piece(0, id);
        return s;
    }
    std::string piece(int, int id) const override { return id >= 3 && id < 259 ? std::string(1, char(id - 3)) : ""; }
    int vocab_size() const override { return 259; }
    int bos_id() const override { return no_bos_ ? -1 : 1; }
    int eos_id() const override { return 2; }
    std::string kind() const override { return "char"; }

private:
    bool no_bos_;
};

int c(char ch) { return int(uint8_t(ch)) + 3; }

std::vector<int> ids_of(const std::string& s) {
    std::vector<int> v;
    for (unsigned char ch : s) v.push_back(int(ch) + 3);
    return v;
}

std::string ids_str(const std::vector<int>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "]";
}

// The row a record should give: full = BOS prompt completion EOS, targets from `first`.
void check_row(const Example& e, const std::vector<int>& full, size_t first, int T) {
    QCOMPARE(e.tokens.size(), size_t(T));
    QCOMPARE(e.targets.size(), size_t(T));
    for (size_t t = 0; t < size_t(T); ++t) {
        int tok = t < full.size() ? full[t] : 0;
        int tgt = (t + 1 < full.size() && t + 1 >= first) ? full[t + 1] : -1;
        QVERIFY2(e.tokens[t] == tok, ("t=" + std::to_string(t) + " tokens " + ids_str(e.tokens)).c_str());
        QVERIFY2(e.targets[t] == tgt, ("t=" + std::to_string(t) + " targets " + ids_str(e.targets)).c_str());
    }
}

std::string qa_line(const std::string& q, const std::string& a) { return json{{"question", q}, {"answer", a}}.dump() + "\n"; }

}  // namespace

class TestDataset : public QObject {
    Q_OBJECT

    std::string dir_;
    CharTok tok_;

    std::string file(const std::string& name, const std::string& content) {
        std::string p = dir_ + "/" + name;
        write_file(p, content);
        return p;
    }

private slots:
    void initTestCase() { dir_ = loftq::test::make_temp_dir("dataset"); }

    // ---- plain text ----
    void textWindows() {
        DatasetOptions o;
        o.seq = 4;
        for (const std::string& content : {std::string("ab\ncd\n\nefg\n"), std::string("ab\r\ncd\r\n \r\n\r\nefg"),
                                           std::string("\n\nab\ncd\n\n\n\t\nefg\n\n")}) {
            Dataset d = load_dataset(file("t.txt", content), tok_, o);
            QCOMPARE(d.format, std::string("text"));
            QVERIFY(d.eval.empty());
            // stream: <s> a b \n c d <s> e f g   (10 tokens) -> windows at 0, 4, 8
            std::vector<int> s = {1, c('a'), c('b'), c('\n'), c('c'), c('d'), 1, c('e'), c('f'), c('g')};
            QCOMPARE(d.train.size(), size_t(3));
            QCOMPARE(d.train[0].tokens, (std::vector<int>{s[0], s[1], s[2], s[3]}));
            QCOMPARE(d.train[0].targets, (std::vector<int>{s[1], s[2], s[3], s[4]}));
            QCOMPARE(d.train[1].tokens, (std::vector<int>{s[4], s[5], s[6], s[7]}));
            QCOMPARE(d.train[1].targets, (std::vector<int>{s[5], s[6], s[7], s[8]}));
            QCOMPARE(d.train[2].tokens, (std::vector<int>{s[8], s[9], 0, 0}));
            QCOMPARE(d.train[2].targets, (std::vector<int>{s[9], -1, -1, -1}));
            QCOMPARE(d.scored_tokens, int64_t(9));   // every next-token pair once
        }
        // Without BOS, documents end with EOS instead.
        CharTok nobos(true);
        Dataset d = load_dataset(file("t.txt", "ab\n\nc"), nobos, o);
        QCOMPARE(d.train.size(), size_t(1));
        QCOMPARE(d.train[0].tokens, (std::vector<int>{c('a'), c('b'), 2, c('c')}));
        QCOMPARE(d.train[0].targets, (std::vector<int>{c('b'), 2, c('c'), 2}));
        // An exact multiple: 9 tokens at T=4 -> windows at 0 and 4 (the second ends at 8).
        d = load_dataset(file("t.txt", "abcdefgh"), tok_, o);
        QCOMPARE(d.train.size(), size_t(2));
        QCOMPARE(d.train[1].targets, (std::vector<int>{c('e'), c('f'), c('g'), c('h')}));
    }

    // ---- JSONL ----
    void jsonlText() {
        DatasetOptions o;
        o.seq = 6;
        Dataset d = load_dataset(file("x.jsonl", "{\"text\": \"hi\"}\n\n{\"text\": \"abcdefgh\", \"id\": 3}\n"), tok_, o);
        QCOMPARE(d.format, std::string("jsonl-text"));
        QCOMPARE(d.train.size(), size_t(2));
        check_row(d.train[0], {1, c('h'), c('i'), 2}, 1, 6);
        QCOMPARE(d.train[0].targets, (std::vector<int>{c('h'), c('i'), 2, -1, -1, -1}));
        // Truncated to T (the start kept) and reported.
        std::vector<int> full = {1};
        for (int x : ids_of("abcdefgh")) full.push_back(x);
        full.push_back(2);
        check_row(d.train[1], std::vector<int>(full.begin(), full.begin() + 7), 1, 6);
        QCOMPARE(d.warnings.size(), size_t(1));
        QVERIFY2(d.warnings[0].find("line 3") != std::string::npos && d.warnings[0].find("x.jsonl") != std::string::npos,
                 d.warnings[0].c_str());
        QCOMPARE(d.scored_tokens, int64_t(3 + 6));
    }

    void jsonlQa() {
        DatasetOptions o;
        o.seq = 64;
        Dataset d = load_dataset(file("qa.jsonl", qa_line("1+1?", "2\n#### 2") + qa_line("Why?", "")), tok_, o);
        QCOMPARE(d.format, std::string("jsonl-qa"));
        QCOMPARE(d.train.size(), size_t(2));
        const std::string prompt = "Question: 1+1?\nAnswer: ";
        std::vector<int> full = tok_.encode(prompt + "2\n#### 2", true, true);
        check_row(d.train[0], full, 1 + prompt.size(), 64);
        // The first scored target is the answer's first token, predicted from the prompt's last.
        QCOMPARE(d.train[0].targets[prompt.size() - 1], -1);
        QCOMPARE(d.train[0].targets[prompt.size()], c('2'));
        QCOMPARE(d.train[0].tokens[prompt.size()], c(' '));
        QCOMPARE(tok_.decode(d.train[0].tokens), prompt + "2\n#### 2");
        // An empty answer still scores the EOS.
        std::vector<int> full2 = tok_.encode("Question: Why?\nAnswer: ", true, true);
        check_row(d.train[1], full2, full2.size() - 1, 64);
        QCOMPARE(d.scored_tokens, int64_t((8 + 1) + 1));
    }

    void jsonlInstruct() {
        DatasetOptions o;
        o.seq = 128;
        std::string content = json{{"instruction", "Add."}, {"input", "1 2"}, {"output", "3"}}.dump() + "\n" +
                              json{{"instruction", "Greet."}, {"output", "Hi"}}.dump() + "\n" +
                              json{{"instruction", "Greet."}, {"input", ""}, {"output", "Hi"}}.dump() + "\n";
        Dataset d = load_dataset(file("alpaca.jsonl", content), tok_, o);
        QCOMPARE(d.format, std::string("jsonl-instruct"));
        QCOMPARE(d.train.size(), size_t(3));
        const std::string p1 = "### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:\n";
        const std::string p2 = "### Instruction:\nGreet.\n\n### Response:\n";
        check_row(d.train[0], tok_.encode(p1 + "3", true, true), 1 + p1.size(), 128);
        check_row(d.train[1], tok_.encode(p2 + "Hi", true, true), 1 + p2.size(), 128);
        check_row(d.train[2], tok_.encode(p2 + "Hi", true, true), 1 + p2.size(), 128);
        QCOMPARE(d.scored_tokens, int64_t(2 + 3 + 3));
        // The same records as a JSON array (Alpaca's alpaca_data.json layout).
        json arr = json::array({json{{"instruction", "Greet."}, {"output", "Hi"}}});
        Dataset a = load_dataset(file("alpaca.json", arr.dump(2)), tok_, o);
        QCOMPARE(a.format, std::string("jsonl-instruct"));
        QCOMPARE(a.train.size(), size_t(1));
        check_row(a.train[0], tok_.encode(p2 + "Hi", true, true), 1 + p2.size(), 128);
    }

    void promptFillingSeqIsDropped() {
        DatasetOptions o;
        const std::string p_short = "Question: a\nAnswer: ";   // 20 chars
        o.seq = int(p_short.size()) + 2;                      // BOS + prompt + 1 answer token fit
        std::string content = qa_line("a", "xyz") + qa_line("a much longer question", "b") + "\n" + qa_line("a", "y");
        Dataset d = load_dataset(file("drop.jsonl", content), tok_, o);
        QCOMPARE(d.train.size(), size_t(2));
        // Row 1: BOS + 20 prompt tokens + "xyz" + EOS cut to T+1 = 23 tokens: targets "x", "y".
        std::vector<int> full = tok_.encode(p_short + "xyz", true, true);
        check_row(d.train[0], std::vector<int>(full.begin(), full.begin() + o.seq + 1), 1 + p_short.size(), o.seq);
        QCOMPARE(d.scored_tokens, int64_t(2 + 2));
        bool dropped = false, cut = false;
        for (const auto& w : d.warnings) {
            if (w.find("dropped") != std::string::npos && w.find("line 2") != std::string::npos) dropped = true;
            if (w.find("cut") != std::string::npos && w.find("line 1") != std::string::npos) cut = true;
        }
        QVERIFY2(dropped && cut, (d.warnings.empty() ? std::string("(none)") : d.warnings[0]).c_str());
        // All dropped: an error naming the file.
        o.seq = 5;
        EXPECT_ERROR(load_dataset(file("drop.jsonl", content), tok_, o), "drop.jsonl", "no usable examples", "seq 5");
    }

    // ---- split ----
    void splitSizesAndDeterminism() {
        std::string content;
        for (int i = 0; i < 10; ++i) content += json{{"text", "r" + std::to_string(i)}}.dump() + "\n";
        const std::string path = file("ten.jsonl", content);
        DatasetOptions o;
        o.seq = 8;
        o.eval_fraction = 0.2;
        o.seed = 7;
        Dataset a = load_dataset(path, tok_, o), b = load_dataset(path, tok_, o);
        QCOMPARE(a.train.size(), size_t(8));
        QCOMPARE(a.eval.size(), size_t(2));
        auto key = [](const Example& e) { return e.tokens[2]; };   // the digit of "r<i>"
        std::set<int> all;
        for (size_t i = 0; i < a.train.size(); ++i) {
            QCOMPARE(a.train[i].tokens, b.train[i].tokens);
            all.insert(key(a.train[i]));
        }
        for (size_t i = 0; i < a.eval.size(); ++i) {
            QCOMPARE(a.eval[i].tokens, b.eval[i].tokens);
            all.insert(key(a.eval[i]));
        }
        QCOMPARE(all.size(), size_t(10));   // disjoint, nothing lost
        for (size_t i = 1; i < a.train.size(); ++i) QVERIFY(key(a.train[i - 1]) < key(a.train[i]));   // file order
        int64_t scored = 0;
        for (const auto& e : a.train)
            for (int t : e.targets) scored += t >= 0;
        QCOMPARE(a.scored_tokens, scored);
        QCOMPARE(scored, int64_t(8 * 3));   // "r", digit, EOS
        // Another seed holds out other examples (for some seed among a few).
        bool differs = false;
        for (uint64_t s = 8; s < 20 && !differs; ++s) {
            o.seed = s;
            Dataset c = load_dataset(path, tok_, o);
            differs = key(c.eval[0]) != key(a.eval[0]) || key(c.eval[1]) != key(a.eval[1]);
        }
        QVERIFY(differs);
        // At least one held out; none from a single example; max_examples caps before the split.
        o.eval_fraction = 0.01;
        QCOMPARE(load_dataset(path, tok_, o).eval.size(), size_t(1));
        o.max_examples = 5;
        o.eval_fraction = 0.2;
        Dataset m = load_dataset(path, tok_, o);
        QCOMPARE(m.train.size() + m.eval.size(), size_t(5));
        QCOMPARE(m.eval.size(), size_t(1));
        for (const auto& e : m.train) QVERIFY(e.tokens[2] <= c('4'));
        o.max_examples = 1;
        Dataset one = load_dataset(path, tok_, o);
        QCOMPARE(one.train.size(), size_t(1));
        QCOMPARE(one.eval.size(), size_t(0));
        o.max_examples = 0;
        o.eval_fraction = 0;
        QCOMPARE(load_dataset(path, tok_, o).eval.size(), size_t(0));
        // load_examples: every example, no split.
        o.eval_fraction = 0.3;
        QCOMPARE(load_examples(path, tok_, o).size(), size_t(10));
        // Options out of range.
        o.eval_fraction = 0.7;
        EXPECT_ERROR(load_dataset(path, tok_, o), "ten.jsonl", "eval_fraction");
        o.eval_fraction = 0;
        o.seq = 0;
        EXPECT_ERROR(load_dataset(path, tok_, o), "ten.jsonl", "seq");
    }

    // ---- format detection and errors ----
    void detection() {
        DatasetOptions o;
        o.seq = 64;
        QCOMPARE(load_dataset(file("j.txt", "{\"text\": \"hello\"}\n"), tok_, o).format, std::string("jsonl-text"));
        QCOMPARE(load_dataset(file("k.txt", "{not json} just text\n"), tok_, o).format, std::string("text"));
        QCOMPARE(load_dataset(file("l.data", "\xEF\xBB\xBF{\"question\": \"q\", \"answer\": \"a\"}\r\n"), tok_, o).format,
                 std::string("jsonl-qa"));
    }

    void errorsNameFileAndLine() {
        DatasetOptions o;
        o.seq = 32;
        EXPECT_ERROR(load_dataset(file("bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": oops}\n"), tok_, o),
                     "bad.jsonl", "line 3", "invalid JSON");
        EXPECT_ERROR(load_dataset(file("miss.jsonl", qa_line("q", "a") + "{\"question\": \"q2\"}\n"), tok_, o),
                     "miss.jsonl", "line 2", "missing \"answer\"");
        EXPECT_ERROR(load_dataset(file("type.jsonl", "\n{\"text\": 5}\n"), tok_, o), "type.jsonl", "line 2",
                     "\"text\" must be a string");
        EXPECT_ERROR(load_dataset(file("keys.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n"), tok_, o),
                     "keys.jsonl", "line 1", "prompt", "expected");
        EXPECT_ERROR(load_dataset(file("arr.jsonl", "[1, 2]\n"), tok_, o), "arr.jsonl", "expected a JSON object");
        EXPECT_ERROR(load_dataset(file("empty.jsonl", ""), tok_, o), "empty.jsonl", "empty");
        EXPECT_ERROR(load_dataset(file("blank.txt", "\n \n\t\n"), tok_, o), "blank.txt", "empty");
        EXPECT_ERROR(load_dataset(file("one.txt", ""), tok_, o), "one.txt", "empty");
        EXPECT_ERROR(load_dataset(dir_ + "/nope.jsonl", tok_, o), "nope.jsonl");
        EXPECT_ERROR(load_dataset(dir_, tok_, o), dir_, "folder");
    }

    // ---- the real GSM8K file ----
    void gsm8kLossOnAnswerOnly() {
        const std::string shared = loftq::test::shared_dir();
        if (shared.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): GSM8K not tested");
        std::ifstream in(shared + "/data/gsm8k/train.jsonl");
        std::string content, line;
        std::vector<json> recs;
        for (int i = 0; i < 20 && std::getline(in, line); ++i) {
            content += line + "\n";
            recs.push_back(json::parse(line));
        }
        const std::string path = file("gsm8k20.jsonl", content);
        for (const std::string model : {"/models/llama2-tokenizer-32k/tokenizer.model",
                                        "/models/llama2-tokenizer-32k/tokenizer.bin", "/models/stories260K/tok512.bin"}) {
            auto tok = load_tokenizer(shared + model);
            DatasetOptions o;
            o.seq = 1024;
            Dataset d = load_dataset(path, *tok, o);
            QCOMPARE(d.format, std::string("jsonl-qa"));
            QCOMPARE(d.train.size(), size_t(20));
            QVERIFY(d.warnings.empty());
            int64_t answer_tokens = 0;
            for (size_t i = 0; i < 20; ++i) {
                const Example& e = d.train[i];
                const std::string q = recs[i]["question"], a = recs[i]["answer"];
                const std::string prompt = "Question: " + q + "\nAnswer: ";
                const std::vector<int> full = tok->encode(prompt + a, true, true);
                // Scored targets: one contiguous run, the answer's tokens then EOS.
                size_t first = 0;
                while (first < e.targets.size() && e.targets[first] < 0) ++first;
                std::vector<int> scored;
                for (size_t t = first; t < e.targets.size() && e.targets[t] >= 0; ++t) scored.push_back(e.targets[t]);
                for (size_t t = first + scored.size(); t < e.targets.size(); ++t) QCOMPARE(e.targets[t], -1);
                QCOMPARE(scored.back(), tok->eos_id());
                QCOMPARE(first + scored.size() + 1, full.size());
                // They decode to the answer exactly (a leading space is dropped at the start).
                scored.pop_back();
                QCOMPARE(tok->decode(scored), a);
                // Everything before is the prompt: the row's tokens are the whole encoding.
                QCOMPARE(std::vector<int>(e.tokens.begin(), e.tokens.begin() + long(full.size())), full);
                const std::vector<int> pre = tok->encode(prompt, true, false);
                QVERIFY(first + 1 <= pre.size());
                const std::string head = tok->decode(std::vector<int>(full.begin(), full.begin() + long(first + 1)));
                QVERIFY2(prompt.compare(0, head.size(), head) == 0 && head.size() + 1 >= prompt.size(), head.c_str());
                answer_tokens += int64_t(scored.size()) + 1;
            }
            QCOMPARE(d.scored_tokens, answer_tokens);
            qInfo("GSM8K x20 with %s: %lld answer tokens scored", tok->kind().c_str(), (long long)answer_tokens);
        }
    }
};

QTEST_MAIN(TestDataset)
#include "test_dataset.moc"
