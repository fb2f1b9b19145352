#!/usr/bin/env bash
# side-by-side.sh: Porter against nginx (direct), Squid and tinyproxy, in one run, on loopback.
#
#   benches/side-by-side.sh [--quick] [--duration S] [--cases LIST] [--porter PATH] [--out DIR]
#
# Cases (--cases takes a comma-separated subset; --quick runs the starred ones for 2 s each):
#   1k-hit* 1k-pass* 100k-hit* 100k-pass 10m-hit* 10m-pass   64 keep-alive connections (10m: 4)
#   1k-hit-c1 (one connection)   1k-hit-c1000 (1,000 connections)   1k-hit-newconn (Connection: close, 16 connections)
#   https-1k-hit* (64 keep-alive TLS connections through CONNECT)   https-newconn* (one request per TLS connection,
#   16 at a time: through Porter's interception, against nginx serving TLS itself on the direct row; tls-load
#   resumes sessions with the tickets each server sends, as browsers do, and both sides speak TLS 1.3:
#   nginx gets ssl_protocols "TLSv1.2 TLSv1.3", nginx 1.23.4's default, whatever its version; under each
#   TLS row, the version and the handshakes that resumed a session and those that did not)
#
# What runs (all on 127.0.0.1, every process in its own process group, stopped by PID at exit):
#   nginx      origin, with as many workers as cores ($SBS_NGINX_WORKERS changes it) so the direct rows
#              use every core as Porter's workers do: /1k.bin /100k.bin /10m.bin fresh for an hour,
#              /nostore/* the same bytes with no-store; plain HTTP on $SBS_ORIGIN (18080) and TLS on $SBS_ORIGIN_TLS (18443), with a
#              certificate from a throw-away origin CA made here with openssl
#   squid      memory cache big enough for every object, on $SBS_SQUID (13128); when Squid was built
#              with OpenSSL (Debian's squid-openssl) also ssl-bump on $SBS_SQUID_BUMP (13130)
#   tinyproxy  pass-through, no cache, on $SBS_TINY (13129)
#   porter     target/release/porter proxy on $SBS_PORTER (13140), cache in the run's folder, an
#              access log there as Squid keeps one, and --intercept with its own CA when the binary has it
# Plain cases go through wrk (absolute-form request lines, as curl -x sends); HTTPS cases through
# tls-load (benches/tls_load.rs), which tunnels with CONNECT and verifies the proxy's certificate.
#
# Output: a table per case (req/s, MB/s, p50/p99 ms, origin requests per client request, CPU
# microseconds per request of the proxy, or of nginx itself on the direct rows), ratios of Porter against each peer, and everything as results.tsv in
# --out (default: a new folder under /tmp, kept). Needs: nginx wrk curl openssl squid tinyproxy
# (apt-get install nginx wrk curl openssl squid-openssl tinyproxy); a missing peer is skipped with
# a note. Build first: cargo build --release && cargo build --release --example tls-load
set -u -o pipefail

DURATION=5; QUICK=0; CASES=""; OUT=""
PORTER=${PORTER:-target/release/porter}
TLS_LOAD=${TLS_LOAD:-target/release/examples/tls-load}
ORIGIN=${SBS_ORIGIN:-18080}; ORIGIN_TLS=${SBS_ORIGIN_TLS:-18443}
SQUID=${SBS_SQUID:-13128}; SQUID_BUMP=${SBS_SQUID_BUMP:-13130}
TINY=${SBS_TINY:-13129}; PORTER_PORT=${SBS_PORTER:-13140}
NGINX_WORKERS=${SBS_NGINX_WORKERS:-$(nproc)}
# nginx 1.23.4 and later offer TLS 1.3 by default, as Porter does; Debian 12's 1.22 stops at TLS 1.2,
# whose session resumption skips the key exchange a resumed TLS 1.3 handshake makes (psk_dhe_ke):
# not the comparison a browser sees today. SBS_NGINX_TLS="TLSv1.2" measures that old default.
NGINX_TLS=${SBS_NGINX_TLS:-TLSv1.2 TLSv1.3}

fail() { echo "side-by-side: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; DURATION=2; shift ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --cases) CASES=${2:?--cases needs a list}; shift 2 ;;
        --porter) PORTER=${2:?--porter needs a path}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ ]] || fail "--duration takes whole seconds"
[[ $NGINX_WORKERS =~ ^[1-9][0-9]*$ ]] || fail "SBS_NGINX_WORKERS takes a number (at least 1)"
for tool in nginx wrk curl openssl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || fail "$tool is missing (apt-get install $tool)"
done
[ -x "$PORTER" ] || fail "$PORTER not found: cargo build --release"
PORTER=$(realpath "$PORTER")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
SQUID_BIN=$(command -v squid || { [ -x /usr/sbin/squid ] && echo /usr/sbin/squid; } || true)
TINY_BIN=$(command -v tinyproxy || { [ -x /usr/bin/tinyproxy ] && echo /usr/bin/tinyproxy; } || true)

# 1,000 connections need more descriptors than the usual soft limit of 1,024 (for wrk and the proxies).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUN=${OUT:-$(mktemp -d /tmp/side-by-side.XXXXXX)}
mkdir -p "$RUN"/{www/nostore,nginx,squid,tiny,porter,tls,logs}
chmod 755 "$RUN"
RESULTS=$RUN/results.tsv

# ---- processes: each in its own session, stopped by PID at exit (benches/common.sh)
NAME=side-by-side
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
for port in $ORIGIN $ORIGIN_TLS $SQUID $SQUID_BUMP $TINY $PORTER_PORT; do
    listening "$port" && fail "127.0.0.1:$port is in use (set the SBS_* variables)"
done

# ---- content and certificates
head -c 1024 /dev/urandom >"$RUN/www/1k.bin"
head -c 102400 /dev/urandom >"$RUN/www/100k.bin"
head -c 10485760 /dev/urandom >"$RUN/www/10m.bin"
cp "$RUN"/www/*.bin "$RUN/www/nostore/"
chmod -R a+rX "$RUN/www"
tls=$RUN/tls
origin_certificate "$tls" bench-origin-ca 'subjectAltName=IP:127.0.0.1,DNS:localhost' || fail "openssl could not make the origin certificate"

# ---- nginx, the origin
{ nginx_conf_head "$NGINX_WORKERS"; cat <<EOF
    sendfile on; tcp_nopush on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN;
        listen 127.0.0.1:$ORIGIN_TLS ssl;
        ssl_certificate $tls/origin.pem; ssl_certificate_key $tls/origin-key.pem;
        ssl_protocols $NGINX_TLS;
        root $RUN/www;
        location / { add_header Cache-Control "max-age=3600"; }
        location /nostore/ { add_header Cache-Control "no-store"; }
        location = /status { stub_status; }
    }
}
EOF
} >"$RUN/nginx/nginx.conf"
start nginx "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/logs/nginx-error.log" -g 'daemon off;'
await "$ORIGIN" nginx || exit 1
origin_requests() { curl -s --max-time 2 "http://127.0.0.1:$ORIGIN/status" | awk 'NR == 3 { print $3 }'; }

# ---- squid (plain, and ssl-bump when built with OpenSSL)
HAVE_BUMP=0
if [ -n "$SQUID_BIN" ]; then
    squid_user=$(squid_user)
    bump_lines=""
    certgen=/usr/lib/squid/security_file_certgen
    if "$SQUID_BIN" -v | grep -q -- '--with-openssl' && [ -x "$certgen" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-squid-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$tls/squid-ca-key.pem" -out "$tls/squid-ca.pem" 2>/dev/null
        "$certgen" -c -s "$RUN/squid/ssldb" -M 16MB >/dev/null 2>&1
        bump_lines="http_port 127.0.0.1:$SQUID_BUMP ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB tls-cert=$tls/squid-ca.pem tls-key=$tls/squid-ca-key.pem
sslcrtd_program $certgen -s $RUN/squid/ssldb -M 16MB
sslcrtd_children 4 startup=2 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$tls/origin-ca.pem"
        HAVE_BUMP=1
    fi
    squid_conf "$SQUID" "$squid_user" "16 MB" "64 MB" "$bump_lines" >"$RUN/squid/squid.conf"
    chown -R "$squid_user" "$RUN/squid"
    chmod a+r "$tls"/*.pem
    start squid "$SQUID_BIN" -N -f "$RUN/squid/squid.conf"
    await "$SQUID" squid || { SQUID_BIN=""; HAVE_BUMP=0; }
else
    echo "side-by-side: squid is not installed; its rows are skipped" >&2
fi

# ---- tinyproxy
if [ -n "$TINY_BIN" ]; then
    printf 'Port %s\nListen 127.0.0.1\nTimeout 60\nMaxClients 1024\nAllow 127.0.0.1\nLogLevel Error\n' \
        "$TINY" >"$RUN/tiny/tinyproxy.conf"
    start tinyproxy "$TINY_BIN" -d -c "$RUN/tiny/tinyproxy.conf"
    await "$TINY" tinyproxy || TINY_BIN=""
else
    echo "side-by-side: tinyproxy is not installed; its rows are skipped" >&2
fi

# ---- porter, with interception when this build has it
# Every load generator connects from 127.0.0.1: lift the per-client cap (256) for the 1,000-connection case.
# Squid writes an access.log line per request, so Porter writes its own (--access-log) too.
porter_args=(proxy --listen "127.0.0.1:$PORTER_PORT" --cache-dir "$RUN/porter/cache" --max-connections-per-client 4096
    --access-log "$RUN/porter/access.log")
HAVE_INTERCEPT=0
if "$PORTER" proxy --help | grep -q -- '--intercept'; then
    "$PORTER" ca init --ca-dir "$RUN/porter/ca" >/dev/null || fail "porter ca init failed"
    porter_args+=(--intercept --ca-dir "$RUN/porter/ca" --upstream-ca "$tls/origin-ca.pem"
        --connect-port "$ORIGIN_TLS")
    HAVE_INTERCEPT=1
fi
RUST_LOG=warn start porter "$PORTER" "${porter_args[@]}"
await "$PORTER_PORT" porter || exit 1

# ---- proxies by name: port, process group, CA for HTTPS
declare -A PORT=([direct]=$ORIGIN [porter]=$PORTER_PORT)
[ -n "$SQUID_BIN" ] && PORT[squid]=$SQUID
[ -n "$TINY_BIN" ] && PORT[tinyproxy]=$TINY
proxy_group() { case "$1" in direct) echo "${PID[nginx]}" ;; *) echo "${PID[$1]:-}" ;; esac; }

# Warm the caches: two requests per URL through each caching proxy.
for name in squid porter; do
    [ -n "${PORT[$name]:-}" ] || continue
    for file in 1k.bin 100k.bin 10m.bin; do
        for _ in 1 2; do
            curl -s -o /dev/null --max-time 30 -x "http://127.0.0.1:${PORT[$name]}" "http://127.0.0.1:$ORIGIN/$file"
        done
    done
done

cat >"$RUN/wrk.lua" <<'EOF'
-- Absolute-form target for proxies (SBS_TARGET), optional Connection: close (SBS_CLOSE=1).
local target = os.getenv("SBS_TARGET")
if target ~= nil and target ~= "" then wrk.path = target end
wrk.headers["Host"] = os.getenv("SBS_HOST")
if os.getenv("SBS_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d secs=%.3f bytes=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.bytes, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

printf 'case\tproxy\treq_s\tmb_s\tp50_ms\tp99_ms\torigin_per_req\tproxy_cpu_us_per_req\terrors\n' >"$RESULTS"
# field NAME LINE: the value of NAME=... in a WRK/TLSLOAD result line.
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# measure CASE PROXY COMMAND...: runs the load command, then records one row.
measure() {
    local case=$1 proxy=$2; shift 2
    local group cpu0 cpu1 orig0 orig1 line
    group=$(proxy_group "$proxy")
    cpu0=$(group_cpu "$group"); orig0=$(origin_requests)
    line=$("$@" 2>"$RUN/logs/load-$case-$proxy.err" | grep -E '^(WRK|TLSLOAD) ' | tail -n 1)
    cpu1=$(group_cpu "$group"); orig1=$(origin_requests)
    echo "$case $proxy group=$group cpu $cpu0 -> $cpu1 origin $orig0 -> $orig1" >>"$RUN/logs/measure.log"
    if [ -z "$line" ]; then
        printf '%s\t%s\t0\t0\t-\t-\t-\t-\tload failed\n' "$case" "$proxy" >>"$RESULTS"
        return
    fi
    awk -v c="$case" -v p="$proxy" -v n="$(field requests "$line")" -v s="$(field secs "$line")" \
        -v b="$(field bytes "$line")" -v p50="$(field p50_us "$line")" -v p99="$(field p99_us "$line")" \
        -v e="$(field errors "$line")" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" \
        -v o="$((orig1 - orig0 - 1))" 'BEGIN {
            rps = s > 0 ? n / s : 0
            orig = (p == "direct" || n == 0) ? "-" : sprintf("%.2f", (o < 0 ? 0 : o) / n)
            us = (n == 0) ? "-" : sprintf("%.1f", 1e6 * cpu / n)
            mbs = s > 0 ? b / s / 1e6 : 0
            printf "%s\t%s\t%.0f\t%.1f\t%.3f\t%.3f\t%s\t%s\t%s\n", c, p, rps, mbs, p50 / 1000, p99 / 1000, orig, us, e
        }' >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "  %-14s %-10s %9s req/s %9s MB/s  p50 %7s ms  p99 %7s ms  us/req %s\n",
        $1, $2, $3, $4, $5, $6, $8 }'
    # The TLS rows: which protocol, and how many handshakes resumed a session.
    case "$line" in
        *" resumed="*) echo "                 $(sed -n 's/.*\(version=[^ ]*\).*/\1/p' <<<"$line") handshakes resumed=$(field resumed "$line") full=$(field full "$line")" ;;
    esac
}

wrk_case() { # case path conns close(0/1) proxies...
    local case=$1 path=$2 conns=$3 close=$4; shift 4
    local threads=2 proxy target
    [ "$conns" -lt 2 ] && threads=1
    for proxy in "$@"; do
        [ -n "${PORT[$proxy]:-}" ] || continue
        target="http://127.0.0.1:$ORIGIN$path"; [ "$proxy" = direct ] && target=$path
        measure "$case" "$proxy" env SBS_TARGET="$target" SBS_HOST="127.0.0.1:$ORIGIN" SBS_CLOSE="$close" \
            wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 5s -s "$RUN/wrk.lua" "http://127.0.0.1:${PORT[$proxy]}/"
    done
}

tls_case() { # case conns new-conn(0/1) proxies...
    local case=$1 conns=$2 new=$3; shift 3
    local proxy args
    [ -x "$TLS_LOAD" ] || { echo "  $case: $TLS_LOAD missing (cargo build --release --example tls-load)"; return; }
    for proxy in "$@"; do
        args=(--conns "$conns" --duration "$DURATION")
        [ "$new" = 1 ] && args+=(--new-conn)
        case "$proxy" in
            direct) args+=(--cacert "$tls/origin-ca.pem") ;;
            squid-bump) [ $HAVE_BUMP = 1 ] || continue
                args+=(--proxy "127.0.0.1:$SQUID_BUMP" --cacert "$tls/squid-ca.pem") ;;
            porter) [ $HAVE_INTERCEPT = 1 ] || continue
                args+=(--proxy "127.0.0.1:$PORTER_PORT" --cacert "$RUN/porter/ca/ca.pem") ;;
        esac
        # Warm the cache of the proxy (two requests) before measuring.
        "$TLS_LOAD" "${args[@]}" --conns 1 --duration 1 "https://127.0.0.1:$ORIGIN_TLS/1k.bin" >/dev/null 2>&1
        measure "$case" "${proxy%-bump}" "$TLS_LOAD" "${args[@]}" "https://127.0.0.1:$ORIGIN_TLS/1k.bin"
    done
}

wanted() { [ -z "$CASES" ] || [[ ",$CASES," == *",$1,"* ]]; }
echo "== side-by-side $(date -u +%FT%TZ) on $(nproc) cores, ${DURATION}s a case, nginx with $NGINX_WORKERS workers; folder $RUN"
echo "   $("$NGINX" -v 2>&1) | ${SQUID_BIN:+$("$SQUID_BIN" -v | head -n 1)} | porter $("$PORTER" --version | awk '{ print $2 }')"
ALL=(1k-hit 1k-pass 100k-hit 100k-pass 10m-hit 10m-pass 1k-hit-c1 1k-hit-c1000 1k-hit-newconn https-1k-hit https-newconn)
[ $QUICK = 1 ] && [ -z "$CASES" ] && CASES=1k-hit,1k-pass,100k-hit,10m-hit,https-1k-hit,https-newconn
for case in "${ALL[@]}"; do
    wanted "$case" || continue
    case "$case" in
        1k-hit) wrk_case "$case" /1k.bin 64 0 direct squid tinyproxy porter ;;
        1k-pass) wrk_case "$case" /nostore/1k.bin 64 0 squid tinyproxy porter ;;
        100k-hit) wrk_case "$case" /100k.bin 64 0 direct squid tinyproxy porter ;;
        100k-pass) wrk_case "$case" /nostore/100k.bin 64 0 squid tinyproxy porter ;;
        10m-hit) wrk_case "$case" /10m.bin 4 0 direct squid tinyproxy porter ;;
        10m-pass) wrk_case "$case" /nostore/10m.bin 4 0 squid tinyproxy porter ;;
        1k-hit-c1) wrk_case "$case" /1k.bin 1 0 direct squid porter ;;
        1k-hit-c1000) wrk_case "$case" /1k.bin 1000 0 direct squid porter ;;
        1k-hit-newconn) wrk_case "$case" /1k.bin 16 1 direct squid porter ;;
        https-1k-hit) tls_case "$case" 64 0 direct squid-bump porter ;;
        https-newconn) tls_case "$case" 16 1 direct squid-bump porter ;;
    esac
done
[ $HAVE_BUMP = 1 ] || echo "  (no HTTPS row for squid: install squid-openssl for ssl-bump)"
[ $HAVE_INTERCEPT = 1 ] || echo "  (no HTTPS row for porter: this build has no --intercept)"

echo
echo "== porter against each peer (req/s: >1 porter faster; us/req: <1 porter cheaper)"
awk -F'\t' 'NR > 1 { k = $1; if (!(k in seen)) { seen[k] = 1; order[++n] = k } r[k, $2] = $3; u[k, $2] = $8 }
    function ratio(a, b) { return (b + 0 > 0 && a + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
    END { printf "  %-14s %12s %12s %14s %16s %17s\n", "case", "vs direct", "vs squid", "vs tinyproxy",
            "us/req vs squid", "us/req vs direct"
        for (i = 1; i <= n; i++) { k = order[i]
            printf "  %-14s %12s %12s %14s %16s %17s\n", k, ratio(r[k, "porter"], r[k, "direct"]),
                ratio(r[k, "porter"], r[k, "squid"]), ratio(r[k, "porter"], r[k, "tinyproxy"]),
                ratio(u[k, "porter"], u[k, "squid"]), ratio(u[k, "porter"], u[k, "direct"]) } }' "$RESULTS"
echo "results: $RESULTS"
