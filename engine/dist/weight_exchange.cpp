// weight_exchange.cpp: see weight_exchange.h.
#include "dist/weight_exchange.h"

#include <cstring>
#include <mutex>
#include <type_traits>

#include "core/error.h"
#include "loftq/job.h"

namespace loftq {

namespace {

struct Writer {
    std::string out;
    template <class T>
    void pod(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        out.append(reinterpret_cast<const char*>(&v), sizeof(T));
    }
    template <class T>
    void array(const T* p, size_t n) {
        pod(uint64_t(n));
        out.append(reinterpret_cast<const char*>(p), n * sizeof(T));
    }
    void matrix(const Matrix& m) {
        pod(m.rows);
        pod(m.cols);
        array(m.data(), m.size());
    }
};

struct Reader {
    const std::string& in;
    size_t at = 0;
    void need(size_t n) {
        if (n > in.size() - at) throw Error("a weight message from another rank is truncated (" + std::to_string(in.size()) + " bytes)");
    }
    template <class T>
    T pod() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, in.data() + at, sizeof(T));
        at += sizeof(T);
        return v;
    }
    template <class V>
    void array(V& v) {
        const uint64_t n = pod<uint64_t>();
        need(n * sizeof(v[0]));
        v.resize(size_t(n));
        std::memcpy(v.data(), in.data() + at, n * sizeof(v[0]));
        at += n * sizeof(v[0]);
    }
    void matrix(Matrix& m) {
        const int64_t r = pod<int64_t>(), c = pod<int64_t>();
        m.reshape_uninit(r, c);
        const uint64_t n = pod<uint64_t>();
        if (n != uint64_t(r) * uint64_t(c)) throw Error("a weight message from another rank has a malformed matrix");
        need(n * sizeof(float));
        std::memcpy(m.data(), in.data() + at, n * sizeof(float));
        at += n * sizeof(float);
    }
};

class CommWeightExchange final : public WeightExchange {
public:
    explicit CommWeightExchange(Comm& c) : comm_(c) {}
    int rank() const override { return comm_.rank(); }
    int ranks() const override { return comm_.size(); }
    void send(int weight, const WeightResult& r, const Decomposition& d) override {
        std::string body = encode_weight(weight, r, d);
        const uint64_t n = body.size();
        std::lock_guard<std::mutex> lock(send_mu_);  // a length and its body go out back to back
        comm_.send(0, CommTag::Weight, &n, sizeof n);
        comm_.send(0, CommTag::Weight, std::move(body));  // handed over, not copied again
    }
    int receive(WeightResult& r, Decomposition& d, const CancelToken& cancel) override {
        cancel.throw_if_cancelled();
        int from = -1;
        const std::string head = comm_.recv_any(CommTag::Weight, &from);
        uint64_t n = 0;
        if (head.size() != sizeof n) throw Error("rank " + std::to_string(from) + " sent a malformed weight header");
        std::memcpy(&n, head.data(), sizeof n);
        std::string body(size_t(n), '\0');
        comm_.recv(from, CommTag::Weight, body.data(), body.size());
        return decode_weight(body, r, d);
    }
    void abort(const std::string& why) override { comm_.abort_all(why); }

private:
    Comm& comm_;
    std::mutex send_mu_;
};

}  // namespace

std::string encode_weight(int weight, const WeightResult& r, const Decomposition& d) {
    Writer w;
    w.pod(int32_t(weight));
    w.pod(int32_t(r.rank));
    for (double v : {r.baseline, r.final_error, r.w_norm, r.out_baseline, r.out_final, r.seconds, d.out_norm}) w.pod(v);
    w.pod(uint64_t(r.steps.size()));
    for (const auto& s : r.steps) {
        w.pod(int32_t(s.step));
        for (double v : {s.error, s.seconds, s.baseline, s.out_error, s.out_baseline}) w.pod(v);
    }
    w.array(d.codes.data(), d.codes.size());
    w.array(d.scales.data(), d.scales.size());
    w.matrix(d.lr.B);
    w.matrix(d.lr.A);
    w.array(d.lr.S.data(), d.lr.S.size());
    return std::move(w.out);
}

int decode_weight(const std::string& bytes, WeightResult& r, Decomposition& d) {
    Reader in{bytes};
    const int weight = in.pod<int32_t>();
    r.rank = in.pod<int32_t>();
    r.baseline = in.pod<double>();
    r.final_error = in.pod<double>();
    r.w_norm = in.pod<double>();
    r.out_baseline = in.pod<double>();
    r.out_final = in.pod<double>();
    r.seconds = in.pod<double>();
    d.out_norm = in.pod<double>();
    const uint64_t ns = in.pod<uint64_t>();
    if (ns > 100000) throw Error("a weight message from another rank has " + std::to_string(ns) + " steps");
    r.steps.resize(size_t(ns));
    for (auto& s : r.steps) {
        s.step = in.pod<int32_t>();
        s.error = in.pod<double>();
        s.seconds = in.pod<double>();
        s.baseline = in.pod<double>();
        s.out_error = in.pod<double>();
        s.out_baseline = in.pod<double>();
    }
    in.array(d.codes);
    in.array(d.scales);
    in.matrix(d.lr.B);
    in.matrix(d.lr.A);
    in.array(d.lr.S);
    if (in.at != bytes.size()) throw Error("a weight message from another rank has " + std::to_string(bytes.size() - in.at) + " extra bytes");
    d.baseline = r.baseline;
    d.final_error = r.final_error;
    d.w_norm = r.w_norm;
    d.out_baseline = r.out_baseline;
    d.out_final = r.out_final;
    d.steps = r.steps;
    d.seconds = r.seconds;
    return weight;
}

std::shared_ptr<WeightExchange> make_weight_exchange(Comm& comm) { return std::make_shared<CommWeightExchange>(comm); }

}  // namespace loftq
