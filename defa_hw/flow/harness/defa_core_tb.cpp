// Verilator testbench of defa_core: one block, no Python per cycle.
//
// Built and driven by defa_hw/flow/verilator.py, which writes defa_core_tb_cfg.h
// (stream widths, the fmap_req fields, result fields, register addresses, counters,
// phase names) and the stimulus files in --dir, all little-endian uint32:
//   csr.u32      (address, value) pairs written before the weights
//   weights.u32  weight beats, TB_WEIGHTS_WORDS words each
//   queries.u32  query beats, TB_QUERIES_WORDS words each
//   fmap.u32     one beat per pixel in input_flatten order, TB_FMAP_WORDS words each
//   shapes.u32   (H, W) per level
// Output in --dir: results.u32 (raw result beats, TB_RESULTS_WORDS words each) and
// summary.txt ("key value" lines: counters, config1, cycles); a failure writes one
// line to error.txt and stderr (exit 3: stuck core, 4: protocol error, 2: bad input).
//
// Cycle: with clk low, drive this cycle's valid/ready/payload and eval (combinational
// ready/valid settle); sample the handshakes; raise clk and eval (the transfer edge).
// A source keeps a shown beat valid until it is taken; a random stall (probability
// --p-stall) only delays the next beat.  The sink (results, fmap_req) drops ready with
// the same probability.
#include "Vdefa_core.h"
#include "verilated.h"
#include "defa_core_tb_cfg.h"

#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

// Verilator names port a__b as a___05Fb (the '_' escaped).
#define PORT(stream, sig) stream##___05F##sig

namespace {

typedef std::vector<uint32_t> Words;
typedef std::chrono::steady_clock Clock;

std::string g_dir;

[[noreturn]] void fail(int code, const char* fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "defa_core_tb: %s\n", buf);
    if (!g_dir.empty()) {
        FILE* f = fopen((g_dir + "/error.txt").c_str(), "w");
        if (f) {
            fprintf(f, "%s\n", buf);
            fclose(f);
        }
    }
    exit(code);
}

struct Beats {
    int nw = 1;
    size_t n = 0;
    Words w;
    const uint32_t* at(size_t i) const { return &w[i * nw]; }
};

Beats read_beats(const char* name, int nw) {
    Beats b;
    b.nw = nw;
    std::string path = g_dir + "/" + name;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail(2, "cannot open %s", path.c_str());
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size % (4L * nw)) fail(2, "%s: %ld bytes is not a whole number of %d-word beats",
                               path.c_str(), size, nw);
    b.n = size / (4L * nw);
    b.w.resize(b.n * nw + 1);
    if (b.n && fread(b.w.data(), 4, b.n * nw, f) != b.n * nw) fail(2, "cannot read %s",
                                                                     path.c_str());
    fclose(f);
    return b;
}

// Payload ports: scalars (<= 64 bits) or VlWide (> 64 bits).
template <typename T> inline void put_port(T& p, const uint32_t* w, int nw) {
    uint64_t v = w[0];
    if (nw > 1) v |= uint64_t(w[1]) << 32;
    p = T(v);
}
template <std::size_t N> inline void put_port(VlWide<N>& p, const uint32_t* w, int nw) {
    for (std::size_t i = 0; i < N; ++i) p[i] = int(i) < nw ? w[i] : 0;
}
template <typename T> inline void get_port(const T& p, uint32_t* w, int nw) {
    uint64_t v = p;
    w[0] = uint32_t(v);
    if (nw > 1) w[1] = uint32_t(v >> 32);
}
template <std::size_t N> inline void get_port(const VlWide<N>& p, uint32_t* w, int nw) {
    for (std::size_t i = 0; i < N && int(i) < nw; ++i) w[i] = p[i];
}

// Bits [off, off + width) of a word array, width <= 32.
inline uint32_t field(const uint32_t* w, int off, int width) {
    uint64_t v = w[off / 32];
    if (off % 32 + width > 32) v |= uint64_t(w[off / 32 + 1]) << 32;
    return uint32_t((v >> (off % 32)) & ((uint64_t(1) << width) - 1));
}

struct Rng {  // xorshift64*
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
        if (!s) s = 1;
    }
    uint32_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return uint32_t((s * 0x2545F4914F6CDD1Dull) >> 32);
    }
};

struct Range {
    size_t start, count;
};

struct Args {
    uint64_t max_cycles = 0, free_run = 0, seed = 0;
    uint64_t n_out = 0, n_mask = 0;
    double p_stall = 0.0;
    bool quiet = false;
};

class Bench {
  public:
    Bench(const Args& a, VerilatedContext* ctx)
        : a_(a), top_(new Vdefa_core{ctx}), rng_(a.seed) {
        double p = a.p_stall;
        thr_ = p <= 0 ? 0 : (p >= 1 ? 0xFFFFFFFFu : uint32_t(p * 4294967296.0));
        csr_ = read_beats("csr.u32", 2);
        weights_ = read_beats("weights.u32", TB_WEIGHTS_WORDS);
        queries_ = read_beats("queries.u32", TB_QUERIES_WORDS);
        fmap_ = read_beats("fmap.u32", TB_FMAP_WORDS);
        Beats sh = read_beats("shapes.u32", 2);
        if (sh.n != TB_N_LEVELS) fail(2, "shapes.u32 has %zu levels, the core %d", sh.n,
                                      TB_N_LEVELS);
        size_t base = 0;
        for (int l = 0; l < TB_N_LEVELS; ++l) {
            h_[l] = sh.at(l)[0];
            w_[l] = sh.at(l)[1];
            level_base_[l] = base;
            base += size_t(h_[l]) * w_[l];
        }
        if (base != fmap_.n) fail(2, "the shapes hold %zu pixels, fmap.u32 %zu beats", base,
                                  fmap_.n);
    }
    ~Bench() {
        top_->final();
        delete top_;
    }

    int run();
    int free_run();

  private:
    bool stall() { return thr_ && rng_.next() < thr_; }
    void tick() {
        top_->clk = 0;
        top_->eval();
        top_->clk = 1;
        top_->eval();
        ++cycles_;
    }
    void idle_inputs() {
        top_->PORT(weights, valid) = 0;
        top_->PORT(queries, valid) = 0;
        top_->PORT(fmap, valid) = 0;
        top_->PORT(results, ready) = 0;
        top_->PORT(fmap_req, ready) = 0;
        top_->csr_we = 0;
    }
    void reset();
    void write_csrs();
    void write_reg(uint32_t addr, uint32_t value) {
        top_->csr_addr = addr;
        top_->csr_wdata = value;
        top_->csr_we = 1;
        tick();
        top_->csr_we = 0;
    }
    uint32_t read_reg(uint32_t addr) {
        top_->csr_addr = addr;
        tick();
        tick();
        return top_->csr_rdata;
    }
    void load_weights();
    void start_block();
    const char* phase_name(uint32_t code) const {
        return code < TB_N_PHASES ? TB_PHASE_NAMES[code] : "?";
    }
    // fmap source: the next pixel to show, or false when none is due.
    bool fmap_next(size_t* pix) const {
        if (reqs_.empty()) return false;
        *pix = reqs_.front().start + fmap_off_;
        return true;
    }
    void fmap_taken() {
        ++fmap_sent_;
        if (++fmap_off_ == reqs_.front().count) {
            reqs_.pop_front();
            fmap_off_ = 0;
        }
    }
    void on_request(const uint32_t* w) {
        uint32_t level = field(w, TB_REQ_LEVEL_OFF, TB_REQ_LEVEL_W);
        uint32_t row = field(w, TB_REQ_ROW_OFF, TB_REQ_ROW_W);
        uint32_t rows = field(w, TB_REQ_ROWS_OFF, TB_REQ_ROWS_W);
        if (level >= TB_N_LEVELS || uint64_t(row) + rows > h_[level])
            fail(4, "fmap_req %" PRIu64 " asks level %u rows %u..%u, outside the feature "
                 "map (%u levels, that level %u rows)", n_reqs_, level, row, row + rows - 1,
                 TB_N_LEVELS, level < TB_N_LEVELS ? h_[level] : 0);
        ++n_reqs_;
        if (rows) reqs_.push_back(Range{level_base_[level] + size_t(row) * w_[level],
                                        size_t(rows) * w_[level]});
        requested_ += size_t(rows) * w_[level];
    }
    void write_summary(const char* extra);

    Args a_;
    Vdefa_core* top_;
    Rng rng_;
    uint32_t thr_ = 0;
    Beats csr_, weights_, queries_, fmap_;
    uint32_t h_[TB_N_LEVELS], w_[TB_N_LEVELS];
    size_t level_base_[TB_N_LEVELS];
    uint64_t cycles_ = 0;
    size_t fmap_sent_ = 0;
    std::deque<Range> reqs_;
    size_t fmap_off_ = 0;
    uint64_t n_reqs_ = 0;
    size_t requested_ = 0;
};

void Bench::reset() {
    idle_inputs();
    top_->csr_addr = 0;
    top_->csr_wdata = 0;
    top_->rst = 1;
    for (int i = 0; i < 3; ++i) tick();
    top_->rst = 0;
    // CTRL.READY: the FWP counters are cleared (a few thousand cycles on defa).
    top_->csr_addr = TB_REG_CTRL;
    const uint64_t limit = cycles_ + 100000;
    while (!(top_->csr_rdata & TB_CTRL_READY)) {
        if (cycles_ > limit) fail(3, "the core is stuck in phase IDLE: CTRL.READY did not "
                                  "show within 100000 cycles of the reset");
        tick();
    }
    tick();
}

void Bench::write_csrs() {
    for (size_t i = 0; i < csr_.n; ++i) write_reg(csr_.at(i)[0], csr_.at(i)[1]);
}

void Bench::load_weights() {
    // The weight port takes a beat per cycle when idle: 4x the beats covers the stalls.
    double f = 1.0 / ((1.0 - a_.p_stall) * (1.0 - a_.p_stall));
    const uint64_t limit = uint64_t(f * 4 * weights_.n) + 100;
    size_t sent = 0;
    bool v = false;
    uint64_t c = 0;
    size_t shown = SIZE_MAX;
    while (sent < weights_.n) {
        if (c++ > limit)
            fail(3, "the core is stuck in phase IDLE: it took %zu of %zu weight beats in %"
                 PRIu64 " cycles", sent, weights_.n, limit);
        if (!v) v = !stall();
        if (v && shown != sent) {
            put_port(top_->PORT(weights, payload), weights_.at(sent), TB_WEIGHTS_WORDS);
            shown = sent;
        }
        top_->PORT(weights, valid) = v;
        top_->clk = 0;
        top_->eval();
        bool fire = v && top_->PORT(weights, ready);
        top_->clk = 1;
        top_->eval();
        ++cycles_;
        if (fire) {
            ++sent;
            v = false;
        }
    }
    top_->PORT(weights, valid) = 0;
}

void Bench::write_summary(const char* extra) {
    FILE* f = fopen((g_dir + "/summary.txt").c_str(), "w");
    if (!f) fail(2, "cannot write %s/summary.txt", g_dir.c_str());
    fputs(extra, f);
    fclose(f);
}

// Reset, registers, weights, CTRL.START; then the register port is parked on PHASE
// (csr_rdata shows the phase of the previous cycle).
void Bench::start_block() {
    reset();
    write_csrs();
    load_weights();
    write_reg(TB_REG_CTRL, TB_CTRL_START);
    top_->csr_addr = TB_REG_PHASE;
}

int Bench::run() {
    start_block();

    Words results;
    results.reserve(size_t(a_.n_out + a_.n_mask / 8 + 16) * TB_RESULTS_WORDS);
    uint32_t rbuf[TB_RESULTS_WORDS + 1];
    uint64_t n_out = 0, n_mask = 0, n_mask_beats = 0;
    bool last_out = false, last_mask = false;
    size_t q_sent = 0, q_shown = SIZE_MAX, f_shown = SIZE_MAX;
    bool qv = false, fv = false;
    uint64_t block = 0;
    const auto t0 = Clock::now();
    auto report = t0 + std::chrono::seconds(5);

    for (;;) {
        if (block >= a_.max_cycles) {
            uint32_t ph = top_->csr_rdata & TB_PHASE_MASK;
            char inputs[256];
            snprintf(inputs, sizeof inputs, "queries %zu/%zu, fmap %zu beats of %" PRIu64
                     " requests, %zu requested beats pending", q_sent, queries_.n, fmap_sent_,
                     n_reqs_, requested_ - fmap_sent_);
            fail(3, "the core is stuck in phase %s: the block did not finish in %" PRIu64
                 " cycles (%" PRIu64 "/%" PRIu64 " output beats, %" PRIu64 "/%" PRIu64
                 " mask bits, inputs %s)", phase_name(ph), a_.max_cycles, n_out, a_.n_out,
                 n_mask, a_.n_mask, inputs);
        }
        // drive
        if (!qv) qv = q_sent < queries_.n && !stall();
        if (qv && q_shown != q_sent) {
            put_port(top_->PORT(queries, payload), queries_.at(q_sent), TB_QUERIES_WORDS);
            q_shown = q_sent;
        }
        top_->PORT(queries, valid) = qv;
        size_t pix = 0;
        if (!fv) fv = fmap_next(&pix) && !stall();
        else fmap_next(&pix);
        if (fv && f_shown != fmap_sent_) {
            put_port(top_->PORT(fmap, payload), fmap_.at(pix), TB_FMAP_WORDS);
            f_shown = fmap_sent_;
        }
        top_->PORT(fmap, valid) = fv;
        const bool rr = !stall();
        top_->PORT(results, ready) = rr;
        const bool qr = !stall();
        top_->PORT(fmap_req, ready) = qr;
        top_->clk = 0;
        top_->eval();
        // sample
        if (qv && top_->PORT(queries, ready)) {
            ++q_sent;
            qv = false;
        }
        if (fv && top_->PORT(fmap, ready)) {
            fmap_taken();
            fv = false;
        }
        if (rr && top_->PORT(results, valid)) {
            get_port(top_->PORT(results, payload), rbuf, TB_RESULTS_WORDS);
            results.insert(results.end(), rbuf, rbuf + TB_RESULTS_WORDS);
            const bool last = field(rbuf, TB_RES_LAST_OFF, 1);
            if (field(rbuf, TB_RES_KIND_OFF, 1) == 0) {
                ++n_out;
                last_out |= last;
            } else {
                n_mask += field(rbuf, TB_RES_COUNT_OFF, TB_RES_COUNT_W);
                ++n_mask_beats;
                last_mask |= last;
            }
        }
        if (qr && top_->PORT(fmap_req, valid)) {
            uint32_t w[TB_FMAP_REQ_WORDS + 1];
            get_port(top_->PORT(fmap_req, payload), w, TB_FMAP_REQ_WORDS);
            on_request(w);
        }
        top_->clk = 1;
        top_->eval();
        ++cycles_;
        ++block;
        if (last_out && last_mask && top_->done) break;
        if (!a_.quiet && !(block & 4095) && Clock::now() > report) {
            report = Clock::now() + std::chrono::seconds(5);
            double s = std::chrono::duration<double>(Clock::now() - t0).count();
            fprintf(stderr, "harness: %" PRIu64 " cycles, phase %s, %" PRIu64 "/%" PRIu64
                    " output beats, %" PRIu64 "/%" PRIu64 " mask bits, %.0f cycles/s\n",
                    block, phase_name(top_->csr_rdata & TB_PHASE_MASK), n_out, a_.n_out,
                    n_mask, a_.n_mask, block / s);
        }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const uint32_t phase = top_->csr_rdata & TB_PHASE_MASK;
    idle_inputs();
    tick();

    if (n_out != a_.n_out) fail(4, "got %" PRIu64 " output beats, expected %" PRIu64, n_out,
                                a_.n_out);
    if (n_mask != a_.n_mask) fail(4, "got %" PRIu64 " mask bits, expected %" PRIu64, n_mask,
                                  a_.n_mask);
    if (q_sent != queries_.n) fail(4, "the core finished without consuming every query beat "
                                   "(%zu/%zu)", q_sent, queries_.n);
    if (!reqs_.empty()) fail(4, "the core finished with %zu requested fmap beats not taken",
                             requested_ - fmap_sent_);

    FILE* f = fopen((g_dir + "/results.u32").c_str(), "wb");
    if (!f) fail(2, "cannot write %s/results.u32", g_dir.c_str());
    if (!results.empty() && fwrite(results.data(), 4, results.size(), f) != results.size())
        fail(2, "cannot write %s/results.u32", g_dir.c_str());
    fclose(f);

    std::string s;
    char line[256];
    for (int i = 0; i < TB_N_COUNTERS; ++i) {
        snprintf(line, sizeof line, "%s %u\n", TB_COUNTERS[i].name,
                 read_reg(TB_COUNTERS[i].addr));
        s += line;
    }
    snprintf(line, sizeof line, "config1 %u\n", read_reg(TB_REG_CONFIG1));
    s += line;
    snprintf(line, sizeof line,
             "cycles_driven %" PRIu64 "\nphase %u\ntotal_cycles %" PRIu64 "\n"
             "block_seconds %.6f\nblock_cycles_per_s %.3f\nfmap_beats %zu\n",
             block, phase, cycles_, secs, block / (secs > 0 ? secs : 1e-9), fmap_sent_);
    s += line;
    snprintf(line, sizeof line, "fmap_requests %" PRIu64 "\n", n_reqs_);
    s += line;
    write_summary(s.c_str());
    if (!a_.quiet)
        fprintf(stderr, "harness: block done in %" PRIu64 " cycles, %.2f s, %.0f cycles/s\n",
                block, secs, block / (secs > 0 ? secs : 1e-9));
    return 0;
}

int Bench::free_run() {
    start_block();
    size_t qi = 0, fi = 0;
    if (queries_.n) put_port(top_->PORT(queries, payload), queries_.at(0), TB_QUERIES_WORDS);
    if (fmap_.n) put_port(top_->PORT(fmap, payload), fmap_.at(0), TB_FMAP_WORDS);
    top_->PORT(queries, valid) = queries_.n > 0;
    top_->PORT(fmap, valid) = fmap_.n > 0;
    top_->PORT(results, ready) = 1;
    top_->PORT(fmap_req, ready) = 1;
    const auto t0 = Clock::now();
    for (uint64_t c = 0; c < a_.free_run; ++c) {
        top_->clk = 0;
        top_->eval();
        const bool qf = top_->PORT(queries, valid) && top_->PORT(queries, ready);
        const bool ff = top_->PORT(fmap, valid) && top_->PORT(fmap, ready);
        top_->clk = 1;
        top_->eval();
        if (qf) {
            if (++qi == queries_.n) qi = 0;
            put_port(top_->PORT(queries, payload), queries_.at(qi), TB_QUERIES_WORDS);
        }
        if (ff) {
            if (++fi == fmap_.n) fi = 0;
            put_port(top_->PORT(fmap, payload), fmap_.at(fi), TB_FMAP_WORDS);
        }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    char line[256];
    snprintf(line, sizeof line, "free_run_cycles %" PRIu64 "\nfree_run_seconds %.6f\n"
             "free_run_cycles_per_s %.3f\n", a_.free_run, secs,
             a_.free_run / (secs > 0 ? secs : 1e-9));
    write_summary(line);
    if (!a_.quiet)
        fprintf(stderr, "harness: free-run %" PRIu64 " cycles, %.2f s, %.0f cycles/s\n",
                a_.free_run, secs, a_.free_run / (secs > 0 ? secs : 1e-9));
    return 0;
}

uint64_t parse_u64(const char* opt, const char* v) {
    char* end;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end) fail(2, "%s %s is invalid: allowed a non-negative integer", opt, v);
    return x;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string o = argv[i];
        if (o == "--quiet") {
            a.quiet = true;
            continue;
        }
        if (i + 1 >= argc) fail(2, "option %s needs a value", o.c_str());
        const char* v = argv[++i];
        if (o == "--dir") g_dir = v;
        else if (o == "--max-cycles") a.max_cycles = parse_u64(o.c_str(), v);
        else if (o == "--free-run") a.free_run = parse_u64(o.c_str(), v);
        else if (o == "--seed") a.seed = parse_u64(o.c_str(), v);
        else if (o == "--n-out") a.n_out = parse_u64(o.c_str(), v);
        else if (o == "--n-mask") a.n_mask = parse_u64(o.c_str(), v);
        else if (o == "--p-stall") {
            a.p_stall = atof(v);
            if (!(a.p_stall >= 0.0 && a.p_stall < 1.0))
                fail(2, "--p-stall %s is invalid: allowed 0 <= p < 1", v);
        } else fail(2, "unknown option %s", o.c_str());
    }
    if (g_dir.empty()) fail(2, "usage: %s --dir D (--max-cycles N --n-out N --n-mask N "
                            "[--p-stall p --seed s] | --free-run N) [--quiet]", argv[0]);
    if (!a.free_run && !a.max_cycles) fail(2, "--max-cycles or --free-run is required");
    VerilatedContext* ctx = new VerilatedContext;
    int rc;
    {
        Bench b(a, ctx);
        rc = a.free_run ? b.free_run() : b.run();
    }
    delete ctx;
    return rc;
}
