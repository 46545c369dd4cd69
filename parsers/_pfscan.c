/*
 * _pfscan: a C scanner for the common shapes of Postfix syslog lines.
 *
 * Pure: a bytes buffer of log lines in, columnar data out; no I/O, no clock. It implements
 * exactly the rules of parsers/syslog.py (envelope, SyslogClock) and parsers/postfix.py (for
 * the line types below); anything it is not sure about is handed back as a FALLBACK op so the
 * pure-Python parser stays the reference and the only source of quarantine reasons and ignore
 * rules. tests/test_fastpath.py checks the two give the same store.
 *
 * Lines handled here (shapes: postconf(5), the Postfix daemons' manual pages, see
 * parsers/postfix.py's docstring for the sources):
 *   delivery agents  QID: to=<..>, [orig_to=<..>, ]relay=.., [conn_use=N, ]delay=.., delays=a/b/c/d,
 *                    dsn=.., status=.. (detail)
 *   smtpd            QID: client=..., connect from, disconnect from, TLS connection established
 *   cleanup          QID: message-id=<..>
 *   qmgr             QID: from=<..>, size=N, nrcpt=N (queue active), QID: removed
 *   postscreen       CONNECT / PASS / DNSBL rank / ... (postscreen(8))
 *   dnsblog          addr IP listed by domain D as A
 * Envelopes: RFC 3164 (with Postfix maillog_file's .micro fraction) and RFC 3339 with an
 * offset or Z (rsyslog, journalctl short-iso). RFC 5424 lines go to the Python path.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* strtod_l */
#include <Python.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE (64 * 1024) /* pipeline/ingest.py MAX_LINE */

/* ops handed to the Python correlation loop */
enum {
    OP_CLIENT = 1,
    OP_PICKUP = 2,
    OP_MSGID = 3,
    OP_QACTIVE = 4,
    OP_REMOVED = 5,
    OP_SENT = 6,
    OP_DELIVERY = 7,
    OP_NOTIFY = 8,
    OP_FALLBACK = 9
};

/* ---- growable arrow-layout columns ---------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
} gbuf;

/* Buffers are reused from one scan() call to the next (the GIL is held throughout, and a
 * re-entrant call just allocates its own): no page faults and no regrowth on every chunk. */
#define POOL_MAX 64
static gbuf pool[POOL_MAX];
static int pool_n = 0;

static gbuf gb_take(void) {
    gbuf b = {NULL, 0, 0};
    if (pool_n > 0) {
        b = pool[--pool_n];
        b.n = 0;
    }
    return b;
}

static void gb_give(gbuf *b) {
    if (b->p && pool_n < POOL_MAX && b->cap <= (64 << 20)) {
        pool[pool_n++] = *b;
    } else {
        free(b->p);
    }
    b->p = NULL;
    b->n = b->cap = 0;
}

static int gb_reserve(gbuf *b, Py_ssize_t extra) {
    if (b->n + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *q = realloc(b->p, (size_t)cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static int gb_put(gbuf *b, const void *src, Py_ssize_t n) {
    if (n == 0) return 0; /* src may be NULL for an empty span */
    if (gb_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->n, src, (size_t)n);
    b->n += n;
    return 0;
}

enum { C_STR, C_I64, C_I32, C_F64 };

typedef struct {
    int kind;
    Py_ssize_t len, nulls;
    gbuf data, offs, valid;
} column;

static int col_init(column *c, int kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->data = gb_take();
    c->offs = gb_take();
    c->valid = gb_take();
    if (kind == C_STR) {
        int32_t z = 0;
        return gb_put(&c->offs, &z, 4);
    }
    return 0;
}

static void col_free(column *c) {
    gb_give(&c->data);
    gb_give(&c->offs);
    gb_give(&c->valid);
}

static int col_bit(column *c, int ok) {
    Py_ssize_t i = c->len;
    if ((i & 7) == 0) {
        char z = 0;
        if (gb_put(&c->valid, &z, 1) < 0) return -1;
    }
    if (ok) c->valid.p[i >> 3] |= (char)(1 << (i & 7));
    else c->nulls++;
    c->len++;
    return 0;
}

static int col_str(column *c, const char *s, Py_ssize_t n) {
    if (gb_put(&c->data, s, n) < 0) return -1;
    if (c->data.n > INT32_MAX) return -1;
    int32_t o = (int32_t)c->data.n;
    if (gb_put(&c->offs, &o, 4) < 0) return -1;
    return col_bit(c, 1);
}

static int col_null(column *c) {
    if (c->kind == C_STR) {
        int32_t o = (int32_t)c->data.n;
        if (gb_put(&c->offs, &o, 4) < 0) return -1;
    } else {
        int64_t z = 0;
        if (gb_put(&c->data, &z, c->kind == C_I32 ? 4 : 8) < 0) return -1;
    }
    return col_bit(c, 0);
}

static int col_i64(column *c, int64_t v) {
    if (c->kind == C_I32) {
        int32_t w = (int32_t)v;
        if (gb_put(&c->data, &w, 4) < 0) return -1;
    } else if (gb_put(&c->data, &v, 8) < 0) {
        return -1;
    }
    return col_bit(c, 1);
}

static int col_f64(column *c, double v) {
    if (gb_put(&c->data, &v, 8) < 0) return -1;
    return col_bit(c, 1);
}

/* (kind, length, null_count, data bytes, offsets bytes or None, validity bytes or None) */
static PyObject *col_export(column *c) {
    PyObject *data = PyBytes_FromStringAndSize(c->data.p ? c->data.p : "", c->data.n);
    PyObject *offs = c->kind == C_STR ? PyBytes_FromStringAndSize(c->offs.p, c->offs.n)
                                      : Py_NewRef(Py_None);
    PyObject *valid = c->nulls ? PyBytes_FromStringAndSize(c->valid.p, c->valid.n)
                               : Py_NewRef(Py_None);
    if (!data || !offs || !valid) {
        Py_XDECREF(data);
        Py_XDECREF(offs);
        Py_XDECREF(valid);
        return NULL;
    }
    return Py_BuildValue("(innNNN)", c->kind, c->len, c->nulls, data, offs, valid);
}

/* ---- small span helpers ---------------------------------------------------------------------- */

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

static int sp_starts(span s, const char *lit) {
    size_t k = strlen(lit);
    return (size_t)s.n >= k && memcmp(s.p, lit, k) == 0;
}

static int sp_eq(span s, const char *lit) {
    size_t k = strlen(lit);
    return (size_t)s.n == k && memcmp(s.p, lit, k) == 0;
}

/* index of lit in s at or after from, or -1 (memchr on the first byte: the needles are short
 * and the haystacks a log line, where memmem's set-up costs more than it saves) */
static Py_ssize_t sp_find(span s, const char *lit, Py_ssize_t from) {
    size_t k = strlen(lit);
    if (from < 0) from = 0;
    const char *p = s.p + from, *end = s.p + s.n;
    while ((size_t)(end - p) >= k) {
        const char *q = memchr(p, lit[0], (size_t)(end - p) - k + 1);
        if (!q) return -1;
        if (memcmp(q + 1, lit + 1, k - 1) == 0) return q - s.p;
        p = q + 1;
    }
    return -1;
}

static Py_ssize_t sp_chr(span s, char ch, Py_ssize_t from) {
    for (Py_ssize_t i = from < 0 ? 0 : from; i < s.n; i++)
        if (s.p[i] == ch) return i;
    return -1;
}

static span sp_sub(span s, Py_ssize_t a, Py_ssize_t b) {
    span r = {s.p + a, b - a};
    return r;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Python's str.isspace() on ASCII: \t \n \v \f \r, \x1c-\x1f and space */
static int is_pyspace(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* all ASCII digits, 1..maxd of them */
static int all_digits(span s, Py_ssize_t maxd) {
    if (s.n < 1 || s.n > maxd) return 0;
    for (Py_ssize_t i = 0; i < s.n; i++)
        if (!is_digit(s.p[i])) return 0;
    return 1;
}

static int64_t to_int(span s) {
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < s.n; i++) v = v * 10 + (s.p[i] - '0');
    return v;
}

static locale_t c_locale; /* "." is the decimal point whatever LC_NUMERIC says */

/* Python float() of a [\d.]+ token: digits with at most one '.' and at least one digit */
static int to_float(span s, double *out) {
    int dots = 0, digits = 0;
    char tmp[64];
    if (s.n < 1 || s.n >= (Py_ssize_t)sizeof tmp) return 0;
    for (Py_ssize_t i = 0; i < s.n; i++) {
        if (s.p[i] == '.') dots++;
        else if (is_digit(s.p[i])) digits++;
        else return 0;
    }
    if (dots > 1 || digits == 0) return 0;
    memcpy(tmp, s.p, (size_t)s.n);
    tmp[s.n] = 0;
    *out = strtod_l(tmp, NULL, c_locale); /* correctly rounded, as Python's float() */
    return 1;
}

/* ---- queue ids (parsers/postfix.py is_queue_id / split_qid) ------------------------------------ */

static int is_queue_id(span s) {
    Py_ssize_t n = s.n;
    if (n >= 5 && n <= 12) {
        int ok = 1;
        for (Py_ssize_t i = 0; i < n; i++) {
            char c = s.p[i];
            if (!(is_digit(c) || (c >= 'A' && c <= 'F'))) { ok = 0; break; }
        }
        if (ok) return 1;
    }
    if (n < 10 || n > 20) return 0;
    int z = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s.p[i];
        /* enable_long_queue_ids alphabet: digits and consonants (postconf(5)) */
        if (c == 'z') { z = 1; continue; }
        if (is_digit(c)) continue;
        if (c >= 'A' && c <= 'Z') { if (strchr("AEIOU", c)) return 0; continue; }
        if (c >= 'a' && c <= 'z') { if (strchr("aeiou", c)) return 0; continue; }
        return 0;
    }
    return z;
}

static int split_qid(span text, span *qid, span *rest) {
    Py_ssize_t colon = sp_find(text, ": ", 0);
    if (colon >= 5 && colon <= 20) {
        span h = sp_sub(text, 0, colon);
        if (is_queue_id(h)) {
            *qid = h;
            *rest = sp_sub(text, colon + 2, text.n);
            return 1;
        }
    }
    return 0;
}

/* parse_hostaddr: name[ip]:port; has_ip=0 when there are no brackets; port -1 when absent.
 * Returns 0 when the port is too long for the INTEGER column (the Python path decides). */
typedef struct {
    span name, ip;
    int has_ip;
    int64_t port;
} hostaddr;

static int parse_hostaddr(span s, hostaddr *h) {
    h->name = s;
    h->has_ip = 0;
    h->port = -1;
    Py_ssize_t lb = sp_chr(s, '[', 0);
    if (lb < 0) return 1;
    Py_ssize_t rb = sp_chr(s, ']', lb);
    if (rb < 0) return 1;
    h->name = sp_sub(s, 0, lb);
    h->ip = sp_sub(s, lb + 1, rb);
    h->has_ip = 1;
    if (h->ip.n >= 5 && strncasecmp(h->ip.p, "ipv6:", 5) == 0) h->ip = sp_sub(h->ip, 5, h->ip.n);
    span tail = sp_sub(s, rb + 1, s.n);
    if (tail.n >= 2 && tail.p[0] == ':') {
        span d = sp_sub(tail, 1, tail.n);
        int digits = 1;
        for (Py_ssize_t i = 0; i < d.n; i++)
            if (!is_digit(d.p[i])) { digits = 0; break; }
        if (digits) {
            if (d.n > 9) return 0;
            h->port = to_int(d);
        }
    }
    return 1;
}

/* ---- UTF-8 validity, as Python's strict decoder (RFC 3629 section 4) -------------------------- */

static int utf8_valid(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0; /* overlong */
            if (c == 0xED && c1 > 0x9F) return 0; /* surrogates */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && c1 < 0x90) return 0;
            if (c == 0xF4 && c1 > 0x8F) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- time -------------------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, int m, int d) { /* proleptic Gregorian, 1970-01-01 = 0 */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int valid_date(int64_t y, int m, int d) {
    static const int ml[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return 0;
    int lim = ml[m - 1] + (m == 2 && is_leap(y));
    return d <= lim;
}

static const char *MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec";

typedef struct {
    int year, month; /* SyslogClock state */
    PyObject *tzfn;  /* None: UTC; else tzfn(y, m, d, hh, mm) -> UTC offset in seconds */
    int64_t last_minute;
    int64_t last_offset;
    PyThreadState **save; /* the scan runs without the GIL; the callback takes it back */
    int pyerr;            /* the callback raised */
} clockstate;

/* local wall time -> UTC micros, via the zone's offset for that minute */
static int local_to_utc(clockstate *ck, int64_t y, int mo, int d, int hh, int mi, int64_t local,
                        int64_t *out) {
    if (ck->tzfn == Py_None) {
        *out = local;
        return 0;
    }
    int64_t minute = local / 60000000;
    if (minute != ck->last_minute) {
        PyEval_RestoreThread(*ck->save);
        PyObject *r = PyObject_CallFunction(ck->tzfn, "Liiii", (long long)y, mo, d, hh, mi);
        long long off = r ? PyLong_AsLongLong(r) : -1;
        Py_XDECREF(r);
        int failed = !r || (off == -1 && PyErr_Occurred());
        *ck->save = PyEval_SaveThread();
        if (failed) {
            ck->pyerr = 1;
            return -1;
        }
        ck->last_minute = minute;
        ck->last_offset = off;
    }
    *out = local - ck->last_offset * 1000000;
    return 0;
}

/* outcome of reading a line's timestamp */
enum { TS_OK, TS_FALLBACK, TS_STOP };

/* RFC 3164 timestamp (parsers/syslog.py _parse_3164 + SyslogClock.resolve). On TS_OK the clock
 * has moved exactly as Python's would; TS_FALLBACK after a clock move means the Python path
 * reports the error (it is given the state from before the line). TS_STOP: a shape whose effect
 * on the clock only Python can tell (int() of odd digits); the caller stops there. */
static int ts_3164(clockstate *ck, span line, int64_t *ts, Py_ssize_t *end, int *err) {
    const char *s = line.p;
    Py_ssize_t n = line.n;
    *err = 0;
    int month = 0;
    for (int i = 0; i < 12; i++)
        if (memcmp(s, MONTHS + 3 * i, 3) == 0) { month = i + 1; break; }
    if (!month || n < 15 || s[3] != ' ') return TS_FALLBACK;
    if (s[6] != ' ' || s[9] != ':' || s[12] != ':') return TS_FALLBACK;
    /* day: "dd" or " d" (space padded); hh mm ss two ASCII digits */
    if (!(is_digit(s[5]) && (is_digit(s[4]) || s[4] == ' '))) return TS_STOP;
    for (int k = 7; k < 15; k++) {
        if (k == 9 || k == 12) continue;
        if (!is_digit(s[k])) return TS_STOP;
    }
    int day = (s[4] == ' ' ? 0 : (s[4] - '0') * 10) + (s[5] - '0');
    int hh = (s[7] - '0') * 10 + (s[8] - '0');
    int mi = (s[10] - '0') * 10 + (s[11] - '0');
    int ss = (s[13] - '0') * 10 + (s[14] - '0');
    Py_ssize_t e = 15;
    int64_t us = 0;
    if (n > 15 && s[15] == '.') {
        Py_ssize_t j = 16;
        while (j < n && is_digit(s[j])) j++;
        if (j < n && (unsigned char)s[j] >= 0x80) return TS_STOP; /* a Unicode digit? */
        if (j == 16) return TS_FALLBACK; /* "empty fraction", before the clock */
        int64_t mul = 100000;
        for (Py_ssize_t k = 16; k < j && k < 22; k++, mul /= 10) us += (s[k] - '0') * mul;
        e = j;
    }
    if (!(hh < 24 && mi < 60 && ss < 61)) return TS_FALLBACK; /* before the clock */
    if (ss == 60) ss = 59;
    int year = ck->year;
    if (ck->month && month < ck->month && ck->month - month > 6) {
        ck->year += 1;
        year = ck->year;
    } else if (ck->month == 1 && month == 12) {
        /* a late line of the old year right after the turn: the clock stays (any other jump
         * forward is a gap in the same year; parsers/syslog.py SyslogClock) */
        year = ck->year - 1;
        if (!valid_date(year, month, day)) return TS_FALLBACK;
        goto compute;
    }
    ck->month = month;
    if (!valid_date(year, month, day)) return TS_FALLBACK;
compute:;
    int64_t local = ((days_from_civil(year, month, day) * 24 + hh) * 60 + mi) * 60 + ss;
    local = local * 1000000 + us;
    if (local_to_utc(ck, year, month, day, hh, mi, local, ts) < 0) { *err = 1; return TS_FALLBACK; }
    *end = e;
    return TS_OK;
}

static int two(const char *p) {
    if (!is_digit(p[0]) || !is_digit(p[1])) return -1;
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* RFC 3339 stamp with an offset or Z: YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|+HHMM). Other
 * shapes datetime.fromisoformat() accepts go to the Python path. */
static int ts_iso(span st, int64_t *ts) {
    const char *s = st.p;
    Py_ssize_t n = st.n;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return 0;
    for (int k = 0; k < 4; k++)
        if (!is_digit(s[k])) return 0;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int mo = two(s + 5), d = two(s + 8), hh = two(s + 11), mi = two(s + 14), ss = two(s + 17);
    if (mo < 0 || d < 0 || hh < 0 || mi < 0 || ss < 0) return 0;
    if (!valid_date(y, mo, d) || hh > 23 || mi > 59 || ss > 59) return 0;
    Py_ssize_t i = 19;
    int64_t us = 0;
    if (i < n && s[i] == '.') {
        Py_ssize_t j = i + 1;
        int64_t mul = 100000;
        while (j < n && is_digit(s[j])) {
            us += (s[j] - '0') * mul;
            mul /= 10;
            j++;
        }
        if (j == i + 1 || j - i - 1 > 6) return 0;
        i = j;
    }
    int64_t off = 0;
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) {
        off = 0;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        int oh, om;
        if (n - i == 6 && s[i + 3] == ':') {
            oh = two(s + i + 1);
            om = two(s + i + 4);
        } else if (n - i == 5) {
            oh = two(s + i + 1);
            om = two(s + i + 3);
        } else {
            return 0;
        }
        if (oh < 0 || om < 0 || oh > 23 || om > 59) return 0;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return 0; /* no offset: the caller's zone applies; left to Python */
    }
    int64_t secs = ((days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60 + ss - off;
    *ts = secs * 1000000 + us;
    return 1;
}

/* ---- output state ------------------------------------------------------------------------------ */

enum {
    D_HOST, D_QID, D_TS, D_SERVICE, D_INSTANCE, D_TO, D_ORIG, D_RELAY, D_RHOST, D_RIP, D_RPORT,
    D_CONN_USE, D_DELAY, D_A, D_B, D_C, D_D, D_DSN, D_STATUS, D_CODE, D_STAGE, D_DETAIL,
    D_REMOTE, D_OFFSET, D_NCOLS
};
static const int D_KINDS[D_NCOLS] = {
    C_STR, C_STR, C_I64, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR, C_I32,
    C_I32, C_F64, C_F64, C_F64, C_F64, C_F64, C_STR, C_STR, C_I32, C_STR, C_STR,
    C_STR, C_I64};

/* E_INSTANCE, R_INSTANCE: the tag before the service, as D_INSTANCE (migration 0011) */
enum {
    E_TS, E_HOST, E_SERVICE, E_INSTANCE, E_KIND, E_QID, E_RHOST, E_RIP, E_DETAIL, E_OFFSET,
    E_NCOLS
};
static const int E_KINDS[E_NCOLS] = {C_I64, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR,
                                     C_STR, C_I64};

enum {
    R_TS, R_HOST, R_SERVICE, R_INSTANCE, R_ACTION, R_STAGE, R_CNAME, R_CIP, R_CODE, R_DSN,
    R_REASON, R_SENDER, R_RCPT, R_HELO, R_PROTO, R_OFFSET, R_NCOLS
};
static const int R_KINDS[R_NCOLS] = {C_I64, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR,
                                     C_I32, C_STR, C_STR, C_STR, C_STR, C_STR, C_STR, C_I64};

typedef struct {
    column d[D_NCOLS];
    column e[E_NCOLS];
    column r[R_NCOLS];
    gbuf recs; /* oprec array */
    PyObject *ops;
    /* a small cache of the last host string object, hosts repeat on every line */
    PyObject *host_obj;
    span host_key;
    int64_t max_ts;
    int have_ts;
    Py_ssize_t stored;
} out_t;

static PyObject *str_of(span s) { return PyUnicode_DecodeASCII(s.p, s.n, "strict"); }

static PyObject *host_str(out_t *o, span h) {
    if (o->host_obj && o->host_key.n == h.n && memcmp(o->host_key.p, h.p, (size_t)h.n) == 0)
        return Py_NewRef(o->host_obj);
    Py_XDECREF(o->host_obj);
    o->host_obj = str_of(h);
    o->host_key = h;
    return o->host_obj ? Py_NewRef(o->host_obj) : NULL;
}


/* one parsed envelope */
typedef struct {
    int64_t ts;
    span host, instance, service, text;
    int64_t offset;
} env_t;


/* An op as C data: the scan runs without the GIL and turns these into tuples afterwards. */
enum { X_NONE, X_STR, X_INT, X_CSTR };
typedef struct {
    int kind;
    span s;
    int64_t i;
    const char *c;
} xval;

typedef struct {
    int code, nx;
    int64_t ts;
    span host, qid;
    xval x[7];
} oprec;

static xval XS(span s) { xval v = {X_STR, s, 0, NULL}; return v; }
static xval XI(int64_t i) { xval v = {X_INT, {NULL, 0}, i, NULL}; return v; }
static xval XNONE(void) { xval v = {X_NONE, {NULL, 0}, 0, NULL}; return v; }
static xval XC(const char *c) { xval v = {X_CSTR, {NULL, 0}, 0, c}; return v; }
static xval XOPT(span s, int present) { return present ? XS(s) : XNONE(); }

/* (code, ts, (host, qid), extra...): the key tuple is what the correlation's dict is keyed by */
static int mkop(out_t *o, int code, int64_t ts, span host, span qid, int nextra, ...) {
    if (gb_reserve(&o->recs, (Py_ssize_t)sizeof(oprec)) < 0) return -1;
    oprec *r = (oprec *)(o->recs.p + o->recs.n);
    o->recs.n += (Py_ssize_t)sizeof(oprec);
    r->code = code;
    r->ts = ts;
    r->host = host;
    r->qid = qid;
    r->nx = nextra;
    va_list ap;
    va_start(ap, nextra);
    for (int i = 0; i < nextra; i++) r->x[i] = va_arg(ap, xval);
    va_end(ap);
    return 0;
}

static PyObject *host_str(out_t *o, span h);

static PyObject *xval_obj(xval *v) {
    switch (v->kind) {
    case X_STR: return PyUnicode_DecodeASCII(v->s.p, v->s.n, "strict");
    case X_INT: return PyLong_FromLongLong(v->i);
    case X_CSTR: return PyUnicode_FromString(v->c);
    default: return Py_NewRef(Py_None);
    }
}

/* the Python tuple of one op record (with the GIL) */
static PyObject *op_tuple(out_t *o, oprec *r) {
    if (r->code == OP_FALLBACK) {
        return Py_BuildValue("(iLLii)", OP_FALLBACK, (long long)r->x[0].i, (long long)r->x[1].i,
                             (int)r->x[2].i, (int)r->x[3].i);
    }
    PyObject *t = PyTuple_New(3 + r->nx);
    if (!t) return NULL;
    PyObject *h = host_str(o, r->host);
    PyObject *q = PyUnicode_DecodeASCII(r->qid.p, r->qid.n, "strict");
    PyObject *key = (h && q) ? PyTuple_Pack(2, h, q) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(q);
    if (!key) {
        Py_DECREF(t);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, PyLong_FromLong(r->code));
    PyTuple_SET_ITEM(t, 1, PyLong_FromLongLong(r->ts));
    PyTuple_SET_ITEM(t, 2, key);
    for (int i = 0; i < r->nx; i++) {
        PyObject *x = xval_obj(&r->x[i]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, 3 + i, x);
    }
    return t;
}

static int put_str(column *c, span s, int present) {
    return present ? col_str(c, s.p, s.n) : col_null(c);
}

static int emit_event_q(out_t *o, env_t *v, const char *kind, span qid, int has_qid, span rhost,
                        int has_rhost, span rip, int has_rip, span detail) {
    column *e = o->e;
    if (col_i64(&e[E_TS], v->ts) < 0 || col_str(&e[E_HOST], v->host.p, v->host.n) < 0 ||
        col_str(&e[E_SERVICE], v->service.p, v->service.n) < 0 ||
        col_str(&e[E_INSTANCE], v->instance.p, v->instance.n) < 0 ||
        col_str(&e[E_KIND], kind, (Py_ssize_t)strlen(kind)) < 0 ||
        put_str(&e[E_QID], qid, has_qid) < 0 ||
        put_str(&e[E_RHOST], rhost, has_rhost) < 0 || put_str(&e[E_RIP], rip, has_rip) < 0 ||
        col_str(&e[E_DETAIL], detail.p, detail.n) < 0 || col_i64(&e[E_OFFSET], v->offset) < 0)
        return -1;
    return 1;
}

static int emit_event(out_t *o, env_t *v, const char *kind, span rhost, int has_rhost, span rip,
                      int has_rip, span detail) {
    span none = {NULL, 0};
    return emit_event_q(o, v, kind, none, 0, rhost, has_rhost, rip, has_rip, detail);
}

/* _client_event(kind, client, detail): remote_host = name or None */
static int client_event(out_t *o, env_t *v, const char *kind, span client, span detail) {
    hostaddr h;
    parse_hostaddr(client, &h);
    return emit_event(o, v, kind, h.name, h.name.n > 0, h.ip, h.has_ip, detail);
}

/* _tls_event */
static int tls_event(out_t *o, env_t *v) {
    span t = v->text;
    char kind[72] = "tls-";
    Py_ssize_t sp = sp_chr(t, ' ', 0);
    Py_ssize_t lvl = sp < 0 ? t.n : sp;
    if (lvl > 64) return 0;
    for (Py_ssize_t i = 0; i < lvl; i++) {
        char c = t.p[i];
        kind[4 + i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    kind[4 + lvl] = 0;
    const char *dir = sp_find(t, " established to ", 0) >= 0 ? " to " : " from ";
    Py_ssize_t at = sp_find(t, dir, 0);
    if (at < 0) return 0;
    span after = sp_sub(t, at + (Py_ssize_t)strlen(dir), t.n);
    Py_ssize_t i = sp_chr(after, ']', 0);
    if (i < 0) return 0; /* rare: left to Python */
    hostaddr h;
    parse_hostaddr(sp_sub(after, 0, i + 1), &h);
    span detail = sp_sub(after, i + 1, after.n);
    while (detail.n && (detail.p[0] == ':' || detail.p[0] == ' ' || is_digit(detail.p[0]))) {
        detail.p++;
        detail.n--;
    }
    return emit_event(o, v, kind, h.name, h.name.n > 0, h.ip, h.has_ip, detail);
}

/* _STAGE_RE: \(in reply to (?P<stage>[^)]+?)(?: command)?\)\s*$ , leftmost match */
static int find_stage(span d, span *stage) {
    Py_ssize_t from = 0;
    for (;;) {
        Py_ssize_t k = sp_find(d, "(in reply to ", from);
        if (k < 0) return 0;
        Py_ssize_t a = k + 13;
        Py_ssize_t close = sp_chr(d, ')', a);
        if (close > a) {
            Py_ssize_t j = close + 1;
            while (j < d.n && is_pyspace(d.p[j])) j++;
            if (j == d.n) {
                span s = sp_sub(d, a, close);
                if (s.n > 8 && memcmp(s.p + s.n - 8, " command", 8) == 0) s.n -= 8;
                *stage = s;
                return 1;
            }
        }
        from = k + 1;
    }
}

/* _SAID_RE: host (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\] said: (?P<code>[2-5]\d\d)[ -] */
static int find_said(span d, span *host, int *code) {
    Py_ssize_t from = 0;
    for (;;) {
        Py_ssize_t k = sp_find(d, "host ", from);
        if (k < 0) return 0;
        from = k + 1;
        Py_ssize_t a = k + 5, j = a;
        while (j < d.n && d.p[j] != '[' && !is_pyspace(d.p[j])) j++;
        if (j == a || j >= d.n || d.p[j] != '[') continue;
        Py_ssize_t rb = sp_chr(d, ']', j + 1);
        if (rb < 0) continue;
        span r = sp_sub(d, rb + 1, d.n);
        if (!sp_starts(r, " said: ") || r.n < 11) continue;
        const char *c = r.p + 7;
        if (!(c[0] >= '2' && c[0] <= '5' && is_digit(c[1]) && is_digit(c[2]) &&
              (c[3] == ' ' || c[3] == '-')))
            continue;
        *host = sp_sub(d, a, j);
        *code = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
        return 1;
    }
}

static int find_lost(span d, span *host, span *ip, span *stage);
static int find_connect(span d, int anchored, span *host, span *ip, span *err);
static int noqueue_reject(out_t *o, env_t *v, span t);

/* delivery agents: parsers/postfix.py _DELIVERY_RE and _parse_delivery */
static int delivery(out_t *o, env_t *v, span qid, span rest) {
    span r = rest;
    /* to=<...>: lazy; take the first '>' followed by ", " and check the rest strictly */
    Py_ssize_t gt = sp_find(r, ">, ", 4);
    if (gt < 0) return 0;
    span to = sp_sub(r, 4, gt);
    if (sp_find(to, ">, ", 0) >= 0) return 0;
    Py_ssize_t i = gt + 3;
    span orig = {NULL, 0};
    int has_orig = 0;
    span cur = sp_sub(r, i, r.n);
    if (sp_starts(cur, "orig_to=<")) {
        Py_ssize_t g2 = sp_find(cur, ">, ", 9);
        if (g2 < 0) return 0;
        orig = sp_sub(cur, 9, g2);
        has_orig = 1;
        cur = sp_sub(cur, g2 + 3, cur.n);
    }
    if (!sp_starts(cur, "relay=")) return 0;
    Py_ssize_t c1 = sp_chr(cur, ',', 6);
    if (c1 < 0 || c1 + 1 >= cur.n || cur.p[c1 + 1] != ' ') return 0;
    span relay = sp_sub(cur, 6, c1);
    cur = sp_sub(cur, c1 + 2, cur.n);
    int64_t conn_use = -1;
    if (sp_starts(cur, "conn_use=")) {
        Py_ssize_t c2 = sp_find(cur, ", ", 9);
        if (c2 < 0) return 0;
        span cu = sp_sub(cur, 9, c2);
        if (!all_digits(cu, 9)) return 0;
        conn_use = to_int(cu);
        cur = sp_sub(cur, c2 + 2, cur.n);
    }
    if (!sp_starts(cur, "delay=")) return 0;
    Py_ssize_t c3 = sp_find(cur, ", delays=", 6);
    if (c3 < 0) return 0;
    double delay;
    if (!to_float(sp_sub(cur, 6, c3), &delay)) return 0;
    cur = sp_sub(cur, c3 + 9, cur.n);
    Py_ssize_t c4 = sp_find(cur, ", dsn=", 0);
    if (c4 < 1) return 0;
    span delays = sp_sub(cur, 0, c4);
    for (Py_ssize_t k = 0; k < delays.n; k++)
        if (!(is_digit(delays.p[k]) || delays.p[k] == '.' || delays.p[k] == '/')) return 0;
    cur = sp_sub(cur, c4 + 6, cur.n);
    Py_ssize_t c5 = sp_find(cur, ", status=", 0);
    if (c5 < 1) return 0;
    span dsn = sp_sub(cur, 0, c5);
    for (Py_ssize_t k = 0; k < dsn.n; k++)
        if (!(is_digit(dsn.p[k]) || dsn.p[k] == '.')) return 0;
    cur = sp_sub(cur, c5 + 9, cur.n);
    Py_ssize_t k = 0;
    while (k < cur.n && cur.p[k] >= 'a' && cur.p[k] <= 'z') k++;
    if (k == 0) return 0;
    span status = sp_sub(cur, 0, k);
    span tail = sp_sub(cur, k, cur.n);
    span detail = {tail.p, 0};
    Py_ssize_t tend = tail.n;
    while (tend > 0 && is_pyspace(tail.p[tend - 1])) tend--;
    if (tend == 0) {
        /* nothing but whitespace after the status */
    } else if (tail.n >= 3 && tail.p[0] == ' ' && tail.p[1] == '(' && tail.p[tend - 1] == ')') {
        detail = sp_sub(tail, 2, tend - 1);
    } else {
        return 0;
    }
    /* delays=a/b/c/d: four floats, or not four parts (then None) */
    double dl[4];
    int ndel = 1;
    for (Py_ssize_t q = 0; q < delays.n; q++) ndel += delays.p[q] == '/';
    if (ndel == 4) {
        Py_ssize_t a = 0;
        for (int q = 0; q < 4; q++) {
            Py_ssize_t b = sp_chr(delays, '/', a);
            if (b < 0) b = delays.n;
            if (!to_float(sp_sub(delays, a, b), &dl[q])) return 0;
            a = b + 1;
        }
    }
    span said_host = {NULL, 0};
    int code = -1;
    if (!find_said(detail, &said_host, &code)) {
        said_host.p = NULL;
        if (detail.n >= 4 && detail.p[0] >= '2' && detail.p[0] <= '5' && is_digit(detail.p[1]) &&
            is_digit(detail.p[2]) && (detail.p[3] == ' ' || detail.p[3] == '-'))
            code = (detail.p[0] - '0') * 100 + (detail.p[1] - '0') * 10 + (detail.p[2] - '0');
    }
    span stage = {NULL, 0};
    int has_stage = find_stage(detail, &stage);
    if (!has_stage) {
        span lh, lip, ls;
        if (find_lost(detail, &lh, &lip, &ls)) {
            said_host = lh;
            stage = ls;
            has_stage = 1;
        } else if (find_connect(detail, 0, &lh, &lip, &ls)) {
            said_host = lh;
            stage.p = "CONNECT";
            stage.n = 7;
            has_stage = 1;
        }
    }
    hostaddr rh;
    if (!parse_hostaddr(relay, &rh)) return 0;
    int relay_none = sp_eq(relay, "none");

    column *d = o->d;
    if (col_str(&d[D_HOST], v->host.p, v->host.n) < 0 || col_str(&d[D_QID], qid.p, qid.n) < 0 ||
        col_i64(&d[D_TS], v->ts) < 0 ||
        col_str(&d[D_SERVICE], v->service.p, v->service.n) < 0 ||
        col_str(&d[D_INSTANCE], v->instance.p, v->instance.n) < 0 ||
        col_str(&d[D_TO], to.p, to.n) < 0 || put_str(&d[D_ORIG], orig, has_orig) < 0 ||
        col_str(&d[D_RELAY], relay.p, relay.n) < 0 ||
        put_str(&d[D_RHOST], rh.name, !relay_none) < 0 ||
        put_str(&d[D_RIP], rh.ip, rh.has_ip) < 0 ||
        (rh.port >= 0 ? col_i64(&d[D_RPORT], rh.port) : col_null(&d[D_RPORT])) < 0 ||
        (conn_use >= 0 ? col_i64(&d[D_CONN_USE], conn_use) : col_null(&d[D_CONN_USE])) < 0 ||
        col_f64(&d[D_DELAY], delay) < 0)
        return -1;
    for (int q = 0; q < 4; q++)
        if ((ndel == 4 ? col_f64(&d[D_A + q], dl[q]) : col_null(&d[D_A + q])) < 0) return -1;
    if (col_str(&d[D_DSN], dsn.p, dsn.n) < 0 || col_str(&d[D_STATUS], status.p, status.n) < 0 ||
        (code >= 0 ? col_i64(&d[D_CODE], code) : col_null(&d[D_CODE])) < 0 ||
        put_str(&d[D_STAGE], stage, has_stage) < 0 ||
        col_str(&d[D_DETAIL], detail.p, detail.n) < 0 ||
        put_str(&d[D_REMOTE], said_host, said_host.p != NULL) < 0 ||
        col_i64(&d[D_OFFSET], v->offset) < 0)
        return -1;
    if (sp_eq(status, "sent")) return mkop(o, OP_SENT, v->ts, v->host, qid, 0) < 0 ? -1 : 1;
    /* the arguments of pipeline/correlate.py classify_delivery after `classify`, in its order:
       the Python side maps them to the classifier's inputs (one mapping for both paths) */
    return mkop(o, OP_DELIVERY, v->ts, v->host, qid, 7, XS(status), XS(dsn),
                code >= 0 ? XI(code) : XNONE(), XS(detail), XOPT(said_host, said_host.p != NULL),
                XOPT(rh.name, !relay_none), XOPT(stage, has_stage)) < 0 ? -1 : 1;
}

/* smtpd "QID: client=..." (_parse_client): ", "-separated key=value, the last one wins */
static int client(out_t *o, env_t *v, span qid, span rest) {
    span f[4] = {{0}};
    int have[4] = {0};
    static const char *keys[4] = {"client", "sasl_method", "sasl_username", "orig_queue_id"};
    Py_ssize_t a = 0;
    for (;;) {
        Py_ssize_t b = sp_find(rest, ", ", a);
        span part = sp_sub(rest, a, b < 0 ? rest.n : b);
        Py_ssize_t eq = sp_chr(part, '=', 0);
        if (eq > 0) {
            span key = sp_sub(part, 0, eq);
            for (int q = 0; q < 4; q++)
                if (sp_eq(key, keys[q])) {
                    f[q] = sp_sub(part, eq + 1, part.n);
                    have[q] = 1;
                }
        }
        if (b < 0) break;
        a = b + 2;
    }
    if (!have[0]) return 0;
    hostaddr h;
    if (!parse_hostaddr(f[0], &h)) return 0;
    span empty = {"", 0};
    return mkop(o, OP_CLIENT, v->ts, v->host, qid, 6, XS(h.name), XS(h.has_ip ? h.ip : empty),
                h.port >= 0 ? XI(h.port) : XNONE(), XOPT(f[1], have[1]), XOPT(f[2], have[2]),
                XOPT(f[3], have[3])) < 0 ? -1 : 1;
}

/* qmgr "from=<(.*?)>, size=(\d+), nrcpt=(\d+)(?: \(queue active\))?\s*$" */
static int qmgr_from(out_t *o, env_t *v, span qid, span rest) {
    Py_ssize_t from = 6;
    for (;;) {
        Py_ssize_t gt = sp_find(rest, ">, size=", from);
        if (gt < 0) return 0;
        from = gt + 1;
        span cur = sp_sub(rest, gt + 8, rest.n);
        Py_ssize_t k = 0;
        while (k < cur.n && is_digit(cur.p[k])) k++;
        if (k == 0) continue;
        if (k > 18) return 0;
        span size = sp_sub(cur, 0, k);
        cur = sp_sub(cur, k, cur.n);
        if (!sp_starts(cur, ", nrcpt=")) continue;
        cur = sp_sub(cur, 8, cur.n);
        k = 0;
        while (k < cur.n && is_digit(cur.p[k])) k++;
        if (k == 0) continue;
        if (k > 9) return 0;
        span nrcpt = sp_sub(cur, 0, k);
        cur = sp_sub(cur, k, cur.n);
        if (sp_starts(cur, " (queue active)")) cur = sp_sub(cur, 15, cur.n);
        Py_ssize_t j = 0;
        while (j < cur.n && is_pyspace(cur.p[j])) j++;
        if (j != cur.n) continue;
        return mkop(o, OP_QACTIVE, v->ts, v->host, qid, 3, XS(sp_sub(rest, 6, gt)),
                    XI(to_int(size)), XI(to_int(nrcpt))) < 0
                   ? -1 : 1;
    }
}

/* postscreen(8) verdict prefixes, parsers/postfix.py _POSTSCREEN_KINDS (same order) */
static const char *PS_PREFIX[][2] = {
    {"CONNECT from ", "ps-connect"}, {"PASS NEW ", "ps-pass-new"},
    {"PASS OLD ", "ps-pass-old"}, {"DNSBL rank ", "ps-dnsbl"},
    {"PREGREET ", "ps-pregreet"}, {"HANGUP ", "ps-hangup"},
    {"DISCONNECT ", "ps-disconnect"}, {"WHITELISTED ", "ps-allowlisted"},
    {"ALLOWLISTED ", "ps-allowlisted"}, {"BLACKLISTED ", "ps-denylisted"},
    {"DENYLISTED ", "ps-denylisted"}, {"WHITELIST VETO ", "ps-allowlist-veto"},
    {"ALLOWLIST VETO ", "ps-allowlist-veto"}, {"COMMAND PIPELINING ", "ps-pipelining"},
    {"NON-SMTP COMMAND ", "ps-non-smtp"}, {"BARE NEWLINE ", "ps-bare-newline"},
    {"COMMAND TIME LIMIT ", "ps-time-limit"}, {"COMMAND COUNT LIMIT ", "ps-count-limit"},
    {"COMMAND LENGTH LIMIT ", "ps-length-limit"}, {NULL, NULL}};

static int postscreen(out_t *o, env_t *v) {
    span t = v->text;
    if (sp_starts(t, "NOQUEUE: ")) return noqueue_reject(o, v, sp_sub(t, 9, t.n));
    for (int q = 0; PS_PREFIX[q][0]; q++) {
        if (!sp_starts(t, PS_PREFIX[q][0])) continue;
        /* _BRACKET_IP_RE: the first [hex:.]+ in brackets */
        span ip = {NULL, 0};
        int has_ip = 0;
        for (Py_ssize_t a = sp_chr(t, '[', 0); a >= 0; a = sp_chr(t, '[', a + 1)) {
            Py_ssize_t b = a + 1;
            while (b < t.n && (is_digit(t.p[b]) || (t.p[b] >= 'a' && t.p[b] <= 'f') ||
                               (t.p[b] >= 'A' && t.p[b] <= 'F') || t.p[b] == ':' ||
                               t.p[b] == '.'))
                b++;
            if (b > a + 1 && b < t.n && t.p[b] == ']') {
                ip = sp_sub(t, a + 1, b);
                has_ip = 1;
                break;
            }
        }
        span none = {NULL, 0};
        return emit_event(o, v, PS_PREFIX[q][1], none, 0, ip, has_ip,
                          sp_sub(t, (Py_ssize_t)strlen(PS_PREFIX[q][0]), t.n));
    }
    return 0;
}


/* name[ip] at d[a]: name is [^\s\[]+ (or * when empty_ok), ip up to the first ']'.
 * Returns the index after ']' or -1. */
static Py_ssize_t hostip_at(span d, Py_ssize_t a, int empty_ok, span *name, span *ip) {
    Py_ssize_t j = a;
    while (j < d.n && d.p[j] != '[' && !is_pyspace(d.p[j])) j++;
    if ((j == a && !empty_ok) || j >= d.n || d.p[j] != '[') return -1;
    Py_ssize_t rb = sp_chr(d, ']', j + 1);
    if (rb < 0) return -1;
    *name = sp_sub(d, a, j);
    *ip = sp_sub(d, j + 1, rb);
    return rb + 1;
}

/* _LOST_RE: (?:lost connection with|conversation with) HOST\[IP\](?: timed out)? while (.+)$ */
static int find_lost(span d, span *host, span *ip, span *stage) {
    for (Py_ssize_t i = 0; i < d.n; i++) {
        Py_ssize_t a;
        span r = sp_sub(d, i, d.n);
        if (sp_starts(r, "lost connection with ")) a = i + 21;
        else if (sp_starts(r, "conversation with ")) a = i + 18;
        else continue;
        Py_ssize_t e = hostip_at(d, a, 0, host, ip);
        if (e < 0) continue;
        span t = sp_sub(d, e, d.n);
        if (sp_starts(t, " timed out while ") && t.n > 17) {
            *stage = sp_sub(t, 17, t.n);
            return 1;
        }
        if (sp_starts(t, " while ") && t.n > 7) {
            *stage = sp_sub(t, 7, t.n);
            return 1;
        }
    }
    return 0;
}

/* _CONNECT_RE: connect to HOST\[IP\](?::(\d+))?: (.+)$ ; anchored or searched */
static int find_connect(span d, int anchored, span *host, span *ip, span *err) {
    Py_ssize_t from = 0;
    for (;;) {
        Py_ssize_t k = sp_find(d, "connect to ", from);
        if (k < 0 || (anchored && k != 0)) return 0;
        from = k + 1;
        Py_ssize_t e = hostip_at(d, k + 11, 0, host, ip);
        if (e < 0) continue;
        span t = sp_sub(d, e, d.n);
        if (t.n >= 2 && t.p[0] == ':' && is_digit(t.p[1])) {
            Py_ssize_t q = 1;
            while (q < t.n && is_digit(t.p[q])) q++;
            t = sp_sub(t, q, t.n);
        }
        if (sp_starts(t, ": ") && t.n > 2) {
            *err = sp_sub(t, 2, t.n);
            return 1;
        }
    }
}

/* parsers/postfix.py _angle: value of key=<...> up to the first '>' followed by a separator */
static int angle(span s, const char *key, span *out) {
    char pat[32];
    size_t k = strlen(key);
    memcpy(pat, key, k);
    memcpy(pat + k, "=<", 3);
    Py_ssize_t i = sp_find(s, pat, 0);
    if (i < 0) return 0;
    Py_ssize_t start = i + (Py_ssize_t)k + 2, j = start;
    for (;;) {
        j = sp_chr(s, '>', j);
        if (j < 0) {
            *out = sp_sub(s, start, s.n);
            return 1;
        }
        char nx = j + 1 < s.n ? s.p[j + 1] : 0;
        if (nx == 0 || nx == ' ' || nx == ',' || nx == ';' || nx == ':') {
            *out = sp_sub(s, start, j);
            return 1;
        }
        j++;
    }
}

/* smtpd _SESSION_END_RE: ^(lost connection|timeout|too many errors) after (\S+)(?: \([^)]*\))?
 * from ([^\s\[]*\[[^\]]*\]) */
static int session_end(out_t *o, env_t *v) {
    span t = v->text;
    const char *kind;
    Py_ssize_t a;
    if (sp_starts(t, "lost connection after ")) { kind = "lost-connection"; a = 22; }
    else if (sp_starts(t, "timeout after ")) { kind = "timeout"; a = 14; }
    else if (sp_starts(t, "too many errors after ")) { kind = "too-many-errors"; a = 22; }
    else return 0;
    Py_ssize_t b = a;
    while (b < t.n && !is_pyspace(t.p[b])) b++;
    if (b == a) return 0;
    span stage = sp_sub(t, a, b);
    span r = sp_sub(t, b, t.n);
    if (sp_starts(r, " (")) {
        Py_ssize_t c = sp_chr(r, ')', 2);
        if (c >= 0 && sp_starts(sp_sub(r, c + 1, r.n), " from ")) r = sp_sub(r, c + 1, r.n);
    }
    if (!sp_starts(r, " from ")) return 0;
    span name, ip;
    Py_ssize_t e = hostip_at(r, 6, 1, &name, &ip);
    if (e < 0) return 0;
    return client_event(o, v, kind, sp_sub(r, 6, e), stage);
}

static int is_lower_action(char c) { return (c >= 'a' && c <= 'z') || c == '_' || c == '-'; }

/* parsers/postfix.py _REJECT_ACTIONS */
static int reject_action(span a) {
    static const char *acts[] = {"reject", "defer", "hold", "discard", "warn", "filter", "redirect",
                                 "milter-reject", "replace", "bcc", "prepend", "reject_warning",
                                 "milter-discard", "milter-hold", NULL};
    for (int i = 0; acts[i]; i++)
        if (sp_eq(a, acts[i])) return 1;
    return 0;
}

static int dsn_at(span s, Py_ssize_t i, Py_ssize_t *end) {
    /* [2-5]\.\d{1,3}\.\d{1,3} followed by ' ' (regex backtracking cannot help: the digit runs
       must end at '.' and ' ') */
    if (i + 1 >= s.n || s.p[i] < '2' || s.p[i] > '5' || s.p[i + 1] != '.') return 0;
    Py_ssize_t j = i + 2, k = j;
    while (k < s.n && is_digit(s.p[k])) k++;
    if (k == j || k - j > 3 || k >= s.n || s.p[k] != '.') return 0;
    j = k + 1;
    k = j;
    while (k < s.n && is_digit(s.p[k])) k++;
    if (k == j || k - j > 3 || k >= s.n || s.p[k] != ' ') return 0;
    *end = k;
    return 1;
}

/* NOQUEUE: reject ... (parsers/postfix.py _parse_reject with queue_id None; header/body checks
 * go to Python) */
static int noqueue_reject(out_t *o, env_t *v, span t) {
    if (sp_find(sp_sub(t, 0, t.n < 30 ? t.n : 30), ": header ", 0) >= 0 ||
        sp_find(sp_sub(t, 0, t.n < 30 ? t.n : 30), ": body ", 0) >= 0)
        return 0;
    Py_ssize_t a = 0;
    while (a < t.n && is_lower_action(t.p[a])) a++;
    if (a == 0 || !sp_starts(sp_sub(t, a, t.n), ": ")) return 0;
    span action = sp_sub(t, 0, a);
    if (!reject_action(action)) return 0;
    Py_ssize_t b = a + 2, c = b;
    if (c >= t.n || t.p[c] < 'A' || t.p[c] > 'Z') return 0;
    c++;
    while (c < t.n && ((t.p[c] >= 'A' && t.p[c] <= 'Z') || t.p[c] == '-')) c++;
    if (c >= t.n || t.p[c] != ' ') return 0;
    span stage = sp_sub(t, b, c);
    Py_ssize_t i = c + 1;
    span cname = {NULL, 0}, cip = {NULL, 0};
    int has_client = 0;
    span r = sp_sub(t, i, t.n);
    if (sp_starts(r, "from ")) {
        span nm, ip;
        Py_ssize_t e = hostip_at(r, 5, 1, &nm, &ip);
        if (e >= 0) {
            if (e + 1 < r.n && r.p[e] == ':' && is_digit(r.p[e + 1])) {
                e++;
                while (e < r.n && is_digit(r.p[e])) e++;
            }
            hostaddr h;
            if (!parse_hostaddr(sp_sub(r, 5, e), &h)) return 0;
            cname = h.name;
            cip = h.ip;
            has_client = 1;
            r = sp_sub(r, e, r.n);
        }
    }
    if (sp_starts(r, ": ")) r = sp_sub(r, 2, r.n);
    else if (sp_starts(r, " ")) r = sp_sub(r, 1, r.n);
    /* _KV_TAIL_RE: the first "; from=<" or ", from=<" */
    span reason = r, tail = {r.p + r.n, 0};
    for (Py_ssize_t q = 0; q + 7 < r.n; q++) {
        if ((r.p[q] == ';' || r.p[q] == ',') && memcmp(r.p + q + 1, " from=<", 7) == 0) {
            reason = sp_sub(r, 0, q);
            tail = sp_sub(r, q, r.n);
            break;
        }
    }
    int code = -1;
    span dsn = {NULL, 0};
    Py_ssize_t de;
    if (reason.n >= 4 && reason.p[0] >= '2' && reason.p[0] <= '5' && is_digit(reason.p[1]) &&
        is_digit(reason.p[2]) && (reason.p[3] == ' ')) {
        code = (reason.p[0] - '0') * 100 + (reason.p[1] - '0') * 10 + (reason.p[2] - '0');
        if (dsn_at(reason, 4, &de)) dsn = sp_sub(reason, 4, de);
    } else if (dsn_at(reason, 0, &de)) {
        dsn = sp_sub(reason, 0, de);
    }
    span proto = {NULL, 0}, helo = {NULL, 0}, sender = {NULL, 0}, rcpt = {NULL, 0};
    int has_proto = 0, has_helo = 0, has_sender = 0, has_rcpt = 0;
    if (tail.n) {
        Py_ssize_t p = sp_find(tail, "proto=", 0);
        if (p >= 0) {
            Py_ssize_t e = p + 6;
            while (e < tail.n && tail.p[e] != ' ' && tail.p[e] != ',' && tail.p[e] != ';') e++;
            proto = sp_sub(tail, p + 6, e);
            has_proto = 1;
        }
        has_helo = angle(tail, "helo", &helo);
        has_sender = angle(tail, "from", &sender);
        has_rcpt = angle(tail, " to", &rcpt);
    }
    column *c_ = o->r;
    if (col_i64(&c_[R_TS], v->ts) < 0 || col_str(&c_[R_HOST], v->host.p, v->host.n) < 0 ||
        col_str(&c_[R_SERVICE], v->service.p, v->service.n) < 0 ||
        col_str(&c_[R_INSTANCE], v->instance.p, v->instance.n) < 0 ||
        col_str(&c_[R_ACTION], action.p, action.n) < 0 ||
        col_str(&c_[R_STAGE], stage.p, stage.n) < 0 ||
        put_str(&c_[R_CNAME], cname, has_client) < 0 || put_str(&c_[R_CIP], cip, has_client) < 0 ||
        (code >= 0 ? col_i64(&c_[R_CODE], code) : col_null(&c_[R_CODE])) < 0 ||
        put_str(&c_[R_DSN], dsn, dsn.p != NULL) < 0 ||
        col_str(&c_[R_REASON], reason.p, reason.n) < 0 ||
        put_str(&c_[R_SENDER], sender, has_sender) < 0 || put_str(&c_[R_RCPT], rcpt, has_rcpt) < 0 ||
        put_str(&c_[R_HELO], helo, has_helo) < 0 || put_str(&c_[R_PROTO], proto, has_proto) < 0 ||
        col_i64(&c_[R_OFFSET], v->offset) < 0)
        return -1;
    return 1;
}

static int smtpd(out_t *o, env_t *v) {
    span t = v->text, qid, rest;
    if (split_qid(t, &qid, &rest)) {
        if (sp_starts(rest, "client=")) return client(o, v, qid, rest);
        return 0;
    }
    span empty = {"", 0};
    if (sp_starts(t, "connect from ")) return client_event(o, v, "connect", sp_sub(t, 13, t.n), empty);
    if (sp_starts(t, "disconnect from ")) {
        span body = sp_sub(t, 16, t.n);
        Py_ssize_t sp = sp_chr(body, ' ', 0);
        if (sp < 0) return client_event(o, v, "disconnect", body, empty);
        return client_event(o, v, "disconnect", sp_sub(body, 0, sp), sp_sub(body, sp + 1, body.n));
    }
    if (sp_starts(t, "NOQUEUE: ")) return noqueue_reject(o, v, sp_sub(t, 9, t.n));
    if (sp_starts(t, "warning: ")) return 0;
    int se = session_end(o, v);
    if (se != 0) return se;
    if (sp_find(t, "TLS connection established from ", 0) >= 0) return tls_event(o, v);
    return 0;
}

static int is_delivery_service(span s) {
    static const char *names[] = {"smtp",  "lmtp",  "local",   "virtual", "pipe",
                                  "error", "retry", "discard", "relay",   NULL};
    for (int i = 0; names[i]; i++)
        if (sp_eq(s, names[i])) return 1;
    return 0;
}

static int message(out_t *o, env_t *v) {
    span svc = v->service, t = v->text, qid, rest;
    if (is_delivery_service(svc)) {
        if (split_qid(t, &qid, &rest)) {
            if (sp_starts(rest, "to=<")) return delivery(o, v, qid, rest);
            return 0;
        }
        if (sp_starts(t, "connect to ")) {
            span h, ip, err;
            if (find_connect(t, 1, &h, &ip, &err))
                return emit_event(o, v, "connect-failure", h, 1, ip, 1, err);
        }
        if (sp_find(t, "TLS connection established to ", 0) >= 0 ||
            sp_find(t, "TLS connection established from ", 0) >= 0)
            return tls_event(o, v);
        return 0;
    }
    if (sp_eq(svc, "smtpd") || sp_eq(svc, "submission") || sp_eq(svc, "smtps")) return smtpd(o, v);
    if (sp_eq(svc, "qmgr") || sp_eq(svc, "oqmgr") || sp_eq(svc, "postsuper")) {
        if (!split_qid(t, &qid, &rest)) return 0;
        if (sp_eq(rest, "removed")) {
            return mkop(o, OP_REMOVED, v->ts, v->host, qid, 0) < 0 ? -1 : 1;
        }
        if (sp_starts(rest, "from=<")) return qmgr_from(o, v, qid, rest);
        return 0;
    }
    if (sp_eq(svc, "cleanup")) {
        if (!split_qid(t, &qid, &rest) || !sp_starts(rest, "message-id=")) return 0;
        span mid = sp_sub(rest, 11, rest.n);
        while (mid.n && is_pyspace(mid.p[0])) { mid.p++; mid.n--; }
        while (mid.n && is_pyspace(mid.p[mid.n - 1])) mid.n--;
        if (mid.n >= 2 && mid.p[0] == '<' && mid.p[mid.n - 1] == '>') mid = sp_sub(mid, 1, mid.n - 1);
        return mkop(o, OP_MSGID, v->ts, v->host, qid, 1, XS(mid)) < 0 ? -1 : 1;
    }
    if (sp_eq(svc, "postscreen")) return postscreen(o, v);
    if (sp_eq(svc, "pickup")) {
        if (!split_qid(t, &qid, &rest)) return 0;
        span sender;
        if (!angle(rest, "from", &sender)) return 0;
        return mkop(o, OP_PICKUP, v->ts, v->host, qid, 1, XS(sender)) < 0 ? -1 : 1;
    }
    if (sp_eq(svc, "bounce")) {
        /* _parse_bounce / _NOTIFICATIONS (bounce(8) log lines) */
        static const char *notes[][2] = {
            {"sender non-delivery notification", "non-delivery"},
            {"sender delay notification", "delay"},
            {"sender delivery status notification", "success"},
            {"postmaster non-delivery notification", "postmaster-non-delivery"},
            {"postmaster delay notification", "postmaster-delay"},
            {"postmaster delivery status notification", "postmaster-success"},
            {NULL, NULL}};
        if (!split_qid(t, &qid, &rest)) return 0;
        Py_ssize_t colon = -1;
        for (Py_ssize_t i = rest.n - 2; i >= 0; i--)
            if (rest.p[i] == ':' && rest.p[i + 1] == ' ') { colon = i; break; }
        if (colon <= 0) return 0;
        span what = sp_sub(rest, 0, colon), nq = sp_sub(rest, colon + 2, rest.n);
        while (nq.n && is_pyspace(nq.p[0])) { nq.p++; nq.n--; }
        while (nq.n && is_pyspace(nq.p[nq.n - 1])) nq.n--;
        if (!is_queue_id(nq)) return 0;
        for (int q = 0; notes[q][0]; q++) {
            if (!sp_eq(what, notes[q][0])) continue;
            char kind[64];
            snprintf(kind, sizeof kind, "notification-%s", notes[q][1]);
            span none = {NULL, 0};
            if (emit_event_q(o, v, kind, qid, 1, none, 0, none, 0, nq) < 0) return -1;
            return mkop(o, OP_NOTIFY, v->ts, v->host, qid, 2, XC(notes[q][1]), XS(nq)) < 0 ? -1
                                                                                       : 1;
        }
        return 0;
    }
    if (sp_eq(svc, "dnsblog") && sp_starts(t, "addr ")) {
        /* text.split(" "): parts[1] is the address, parts[5] the list */
        span parts[6];
        int np = 0;
        Py_ssize_t a = 0;
        while (np < 6) {
            Py_ssize_t b = sp_chr(t, ' ', a);
            parts[np++] = sp_sub(t, a, b < 0 ? t.n : b);
            if (b < 0) break;
            a = b + 1;
        }
        return emit_event(o, v, "dnsbl-listed", parts[5], np > 5, parts[1], np > 1, t);
    }
    return 0;
}

/* envelope after the timestamp: "host prog[pid]: text" (parsers/syslog.py _split_tag) */
static int split_tag(span rest, env_t *v) {
    Py_ssize_t sp = sp_chr(rest, ' ', 0);
    if (sp <= 0) return 0;
    v->host = sp_sub(rest, 0, sp);
    Py_ssize_t colon = sp_find(rest, ": ", sp + 1);
    if (colon < 0) return 0;
    span tag = sp_sub(rest, sp + 1, colon);
    v->text = sp_sub(rest, colon + 2, rest.n);
    if (tag.n && tag.p[tag.n - 1] == ']') {
        Py_ssize_t lb = -1;
        for (Py_ssize_t i = tag.n - 1; i >= 0; i--)
            if (tag.p[i] == '[') { lb = i; break; }
        if (lb <= 0 || !all_digits(sp_sub(tag, lb + 1, tag.n - 1), 18)) return 0;
        tag.n = lb;
    }
    if (tag.n == 0 || sp_chr(tag, ' ', 0) >= 0) return 0;
    /* is_postfix_program: starts with "postfix" and has a "/" (postconf(5) syslog_name) */
    if (!sp_starts(tag, "postfix")) return 0;
    Py_ssize_t slash = -1;
    for (Py_ssize_t i = tag.n - 1; i >= 0; i--)
        if (tag.p[i] == '/') { slash = i; break; }
    if (slash < 0) return 0;
    v->instance = sp_sub(tag, 0, slash);
    v->service = sp_sub(tag, slash + 1, tag.n);
    return 1;
}

/* one line: 1 handled, 0 fallback (clock already moved as Python's would), 2 stop, -1 error */
static int one_line(out_t *o, clockstate *ck, span line, int64_t offset) {
    if (line.n && line.p[line.n - 1] == '\r') line.n--;
    if (line.n == 0 || line.n > MAX_LINE) return 0;
    int ascii = 1;
    {
        /* eight bytes at a time: any byte >= 0x80, any zero byte */
        const uint64_t hi = 0x8080808080808080ULL, lo = 0x0101010101010101ULL;
        uint64_t acc_hi = 0, acc_zero = 0;
        Py_ssize_t i = 0;
        for (; i + 8 <= line.n; i += 8) {
            uint64_t w;
            memcpy(&w, line.p + i, 8);
            acc_hi |= w;
            acc_zero |= (w - lo) & ~w & hi;
        }
        for (; i < line.n; i++) {
            unsigned char c = (unsigned char)line.p[i];
            acc_hi |= c;
            if (c == 0) acc_zero = 1;
        }
        if (acc_zero) {
            /* the word test can flag a 0x80 byte next to others; look again byte by byte */
            if (memchr(line.p, 0, (size_t)line.n)) return 0; /* quarantined before the envelope */
        }
        if (acc_hi & hi) ascii = 0;
    }
    if (!ascii && !utf8_valid((const unsigned char *)line.p, line.n)) return 0;
    env_t v;
    v.offset = offset;
    char c0 = line.p[0];
    span rest;
    if (is_digit(c0)) {
        if (line.n > 4 && line.p[4] == '-') {
            Py_ssize_t sp = sp_chr(line, ' ', 0);
            if (sp < 0 || sp + 1 >= line.n || is_digit(line.p[sp + 1])) return 0;
            if (!ts_iso(sp_sub(line, 0, sp), &v.ts)) return 0;
            rest = sp_sub(line, sp + 1, line.n);
        } else {
            return 0;
        }
    } else if (c0 == '<') {
        return 0;
    } else {
        if (line.n < 16) return 2; /* may move the clock, then fail: Python times it */
        for (int i = 0; i < 16; i++)
            if ((unsigned char)line.p[i] >= 0x80) return 2;
        Py_ssize_t end;
        int err;
        int r = ts_3164(ck, line, &v.ts, &end, &err);
        if (err) return -1;
        if (r == TS_STOP) return 2;
        if (r != TS_OK) return 0;
        if (end >= line.n || line.p[end] != ' ') return 0;
        rest = sp_sub(line, end + 1, line.n);
    }
    if (!ascii) return 0;
    if (!split_tag(rest, &v)) return 0;
    int r = message(o, &v);
    if (r == 1) {
        if (!o->have_ts || v.ts > o->max_ts) o->max_ts = v.ts;
        o->have_ts = 1;
        o->stored++;
    }
    return r;
}

/* scan(buf, pos, max_lines, final, year, month, tzfn, base) ->
 *   (pos, lines, year, month, stored, max_ts or None, ops, delivery_columns, event_columns,
 *    stopped)
 * ops are tuples in line order; a FALLBACK op is (9, start, end, year_before, month_before) for
 * the Python path. Reading stops after max_lines lines, at the end of the last complete line
 * (or the end of buf when final), or right after a line only Python can time (then the last
 * op is its FALLBACK, `stopped` is 1, and the caller continues with the Python clock's state). */
static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_lines;
    int final, year, month;
    PyObject *tzfn;
    long long base;
    if (!PyArg_ParseTuple(args, "y*nnpiiOL", &view, &pos, &max_lines, &final, &year, &month,
                          &tzfn, &base))
        return NULL;
    out_t o;
    memset(&o, 0, sizeof o);
    int ok = 1;
    for (int i = 0; i < D_NCOLS; i++) ok &= col_init(&o.d[i], D_KINDS[i]) == 0;
    for (int i = 0; i < E_NCOLS; i++) ok &= col_init(&o.e[i], E_KINDS[i]) == 0;
    for (int i = 0; i < R_NCOLS; i++) ok &= col_init(&o.r[i], R_KINDS[i]) == 0;
    o.recs = gb_take();
    PyThreadState *save = NULL;
    clockstate ck = {year, month, tzfn, INT64_MIN, 0, &save, 0};
    const char *buf = view.buf;
    Py_ssize_t n = view.len, lines = 0;
    int stopped = 0, failed = 0;
    PyObject *result = NULL;
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    /* phase 1, without the GIL (the writer thread commits meanwhile): lines into columns and
       op records; `buf` is an immutable bytes object the caller holds */
    save = PyEval_SaveThread();
    while (pos < n && lines < max_lines) {
        const char *nl = memchr(buf + pos, '\n', (size_t)(n - pos));
        Py_ssize_t end;
        if (nl) end = nl - buf;
        else if (final) end = n;
        else break;
        span line = {buf + pos, end - pos};
        int by = ck.year, bm = ck.month;
        int r = one_line(&o, &ck, line, base + pos);
        if (r < 0) {
            failed = 1;
            break;
        }
        if (r != 1) {
            span none = {NULL, 0};
            if (mkop(&o, OP_FALLBACK, 0, none, none, 4, XI(pos), XI(end), XI(by), XI(bm)) < 0) {
                failed = 1;
                break;
            }
        }
        lines++;
        pos = nl ? end + 1 : end;
        if (r == 2) {
            stopped = 1;
            break;
        }
    }
    PyEval_RestoreThread(save);
    if (failed) {
        if (!ck.pyerr) PyErr_NoMemory();
        goto done;
    }
    /* phase 2, with the GIL: the op tuples */
    {
        Py_ssize_t nrec = o.recs.n / (Py_ssize_t)sizeof(oprec);
        o.ops = PyList_New(nrec);
        if (!o.ops) goto done;
        for (Py_ssize_t i = 0; i < nrec; i++) {
            PyObject *t = op_tuple(&o, (oprec *)(o.recs.p + i * (Py_ssize_t)sizeof(oprec)));
            if (!t) goto done;
            PyList_SET_ITEM(o.ops, i, t);
        }
    }
    {
        PyObject *dcols = PyTuple_New(D_NCOLS), *ecols = PyTuple_New(E_NCOLS),
                 *rcols = PyTuple_New(R_NCOLS);
        if (!dcols || !ecols || !rcols) {
            Py_XDECREF(dcols);
            Py_XDECREF(ecols);
            Py_XDECREF(rcols);
            goto done;
        }
        for (int i = 0; i < R_NCOLS; i++) {
            PyObject *c = col_export(&o.r[i]);
            if (!c) { Py_DECREF(dcols); Py_DECREF(ecols); Py_DECREF(rcols); goto done; }
            PyTuple_SET_ITEM(rcols, i, c);
        }
        for (int i = 0; i < D_NCOLS; i++) {
            PyObject *c = col_export(&o.d[i]);
            if (!c) { Py_DECREF(dcols); Py_DECREF(ecols); Py_DECREF(rcols); goto done; }
            PyTuple_SET_ITEM(dcols, i, c);
        }
        for (int i = 0; i < E_NCOLS; i++) {
            PyObject *c = col_export(&o.e[i]);
            if (!c) { Py_DECREF(dcols); Py_DECREF(ecols); Py_DECREF(rcols); goto done; }
            PyTuple_SET_ITEM(ecols, i, c);
        }
        PyObject *mx = o.have_ts ? PyLong_FromLongLong(o.max_ts) : Py_NewRef(Py_None);
        result = Py_BuildValue("(nniinNONNiN)", pos, lines, ck.year, ck.month, o.stored, mx,
                               o.ops, dcols, ecols, stopped, rcols);
    }
done:
    for (int i = 0; i < D_NCOLS; i++) col_free(&o.d[i]);
    for (int i = 0; i < E_NCOLS; i++) col_free(&o.e[i]);
    for (int i = 0; i < R_NCOLS; i++) col_free(&o.r[i]);
    gb_give(&o.recs);
    Py_XDECREF(o.ops);
    Py_XDECREF(o.host_obj);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Scan whole Postfix log lines into columns (see fastscan.py)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_pfscan",
    .m_doc = "C scanner for Postfix log lines.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pfscan(void) {
    if (!c_locale) c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) return PyErr_NoMemory();
    return PyModule_Create(&module);
}
