#!/usr/bin/env bash
# Ingest comparison, hub vs Orthanc, in one run on this machine: the same files (the kit's
# make_instances.py), the same clients (DCMTK storescu for C-STORE, the kit's stow_bench.py --mode raw
# for STOW-RS), 1 and 4 parallel clients; instances/s, MB/s and each server's peak RSS (VmHWM), plus
# the peak RSS for a small and a 4x larger study. Slow (minutes): runs only with --run.
#
#   cargo build --release -p yilian
#   benches/ingest_compare.sh --run            # needs root (network namespace), apt orthanc orthanc-dicomweb dcmtk
#
# Env: N=300 (instances per measurement, one study), SMALL=50 (the small study; the large one is 4x),
#   STOW_BATCH=25 (instances per STOW request), CLIENTS="1 4", RUNS=3 (throughput runs; the summary
#   gives medians), BENCH_KIT=/work/shared/bench,
#   YILIAN_BIN (default $CARGO_TARGET_DIR/release/yilian), BENCH_VENV=/var/tmp/yilian-bench-venv,
#   WORK (default a fresh folder under /var/tmp), RESULTS (TSV; default $WORK/../ingest-compare.tsv).
# Everything (hub, Orthanc, clients) runs inside a private network namespace: Orthanc 1.10 listens on
# all addresses. Each measurement stores freshly generated instances (new UIDs) into a server that
# keeps running; VmHWM is reset (/proc/PID/clear_refs) before each measurement and read after it.
# TCP_NODELAY=1 for DCMTK (storescu, and Orthanc's DCMTK-based SCP), see the kit's README.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export TCP_NODELAY=1
export BENCH_KIT=${BENCH_KIT:-/work/shared/bench}
N=${N:-300}
SMALL=${SMALL:-50}
STOW_BATCH=${STOW_BATCH:-25}
CLIENTS=${CLIENTS:-1 4}
RUNS=${RUNS:-3}
YILIAN_BIN=${YILIAN_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/yilian}
BENCH_VENV=${BENCH_VENV:-/var/tmp/yilian-bench-venv}
HUB_HTTP=127.0.0.1:18080
HUB_DICOM_PORT=11112
ORTHANC_HTTP=8042
ORTHANC_PORT=4242
SCU_AET=BENCHSCU

outer() {
  if [ "${1:-}" != "--run" ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
  fi
  [ "$(id -u)" -eq 0 ] || { echo "ingest_compare: needs root for the network namespace" >&2; exit 1; }
  for t in Orthanc storescu echoscu dcmdump curl python3; do
    command -v "$t" >/dev/null || { echo "ingest_compare: missing $t (apt: orthanc orthanc-dicomweb dcmtk curl python3-venv)" >&2; exit 1; }
  done
  [ -x "$YILIAN_BIN" ] || { echo "ingest_compare: no $YILIAN_BIN (cargo build --release -p yilian)" >&2; exit 1; }
  [ -f "$BENCH_KIT/make_instances.py" ] || { echo "ingest_compare: no kit at $BENCH_KIT" >&2; exit 1; }
  if ! "$BENCH_VENV/bin/python" -c 'import pydicom, numpy, requests' 2>/dev/null; then
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check pydicom numpy requests
  fi
  export WORK=${WORK:-$(mktemp -d /var/tmp/yilian-ingest-compare.XXXXXX)}
  export RESULTS=${RESULTS:-$WORK/../ingest-compare.tsv}
  local ns="yilian-bench-$$"
  ip netns add "$ns"
  trap 'ip netns del '"$ns"' 2>/dev/null || true' EXIT
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" "$0" --inner
}

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

hwm_reset() { echo 5 >"/proc/$1/clear_refs"; }
hwm_kb() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }

# gen DIR COUNT C: COUNT fresh instances (one new study) in DIR/all, hard-linked round-robin into
# DIR/part0..part{C-1}.
gen() {
  local dir=$1 count=$2 c=$3 i=0
  rm -rf "$dir"
  "$BENCH_VENV/bin/python" "$BENCH_KIT/make_instances.py" "$dir/all" -n "$count" >/dev/null 2>&1
  for f in "$dir"/all/*.dcm; do
    mkdir -p "$dir/part$((i % c))"
    ln "$f" "$dir/part$((i % c))/"
    i=$((i + 1))
  done
  sync
}

study_of() { dcmdump -q -Un +P 0020,000d "$(ls "$1"/all/*.dcm | head -n1)" | sed -E 's/^[^[]*\[([^]]*)\].*$/\1/'; }

stored() { # SERVER STUDY -> instances the server holds for the study
  if [ "$1" = hub ]; then
    curl -sf -H "Authorization: Bearer $TOKEN" "http://$HUB_HTTP/api/v1/studies/$2" |
      "$BENCH_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["instances"])' 2>/dev/null || echo "?"
  else
    curl -sf -X POST -d "{\"Level\":\"Instance\",\"Query\":{\"StudyInstanceUID\":\"$2\"}}" \
      "http://127.0.0.1:$ORTHANC_HTTP/tools/find" |
      "$BENCH_VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?"
  fi
}

# measure SERVER PATH C COUNT LABEL: generates COUNT instances, stores them with C parallel clients,
# appends one TSV line to $RESULTS.
measure() {
  local server=$1 path=$2 c=$3 count=$4 label=$5
  local dir="$WORK/data" pid secs rc=0
  gen "$dir" "$count" "$c"
  local bytes study
  bytes=$(cat "$dir"/all/*.dcm | wc -c)
  study=$(study_of "$dir")
  if [ "$server" = hub ]; then pid=$HUB_PID; else pid=$ORTHANC_PID; fi
  hwm_reset "$pid"
  if [ "$path" = cstore ]; then
    local aec port pids=()
    if [ "$server" = hub ]; then aec=YILIAN port=$HUB_DICOM_PORT; else aec=ORTHANC port=$ORTHANC_PORT; fi
    local t0 t1
    t0=$(date +%s.%N)
    for ((i = 0; i < c; i++)); do
      /usr/bin/storescu -aet "$SCU_AET" -aec "$aec" +sd -nh 127.0.0.1 "$port" "$dir/part$i" \
        >"$WORK/storescu.$i.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc -l)
  else
    local url token="" pids=()
    if [ "$server" = hub ]; then url="http://$HUB_HTTP/dicomweb" token=$TOKEN; else url="http://127.0.0.1:$ORTHANC_HTTP/dicom-web"; fi
    for ((i = 0; i < c; i++)); do
      STOW_BEARER=$token "$BENCH_VENV/bin/python" "$here/benches/stow_bearer.py" "$url" "$dir/part$i" \
        --mode raw --batch "$STOW_BATCH" >"$WORK/stow.$i.json" 2>"$WORK/stow.$i.err" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    # The longest of the clients' own timers (each reads its files before its clock starts).
    secs=$(cat "$WORK"/stow.*.json | "$BENCH_VENV/bin/python" -c \
      'import json,sys; print(max(json.loads(l)["seconds"] for l in sys.stdin)); ' )
    if grep -q '"failed": [1-9]' "$WORK"/stow.*.json; then rc=1; fi
    rm -f "$WORK"/stow.*.json
  fi
  local hwm n_stored
  hwm=$(hwm_kb "$pid")
  n_stored=$(stored "$server" "$study")
  local ips mbs
  ips=$(echo "$count / $secs" | bc -l)
  mbs=$(echo "$bytes / 1000000 / $secs" | bc -l)
  printf '%s\t%s\t%s\t%d\t%d\t%d\t%.3f\t%.1f\t%.1f\t%d\t%s\t%d\n' "$label" "$server" "$path" "$c" \
    "$count" "$bytes" "$secs" "$ips" "$mbs" "$hwm" "$n_stored" "$rc" | tee -a "$RESULTS" >&2
}

inner() {
  mkdir -p "$WORK"
  log "work folder $WORK, results $RESULTS"
  # The hub: the demo alliance with data under $WORK/hub-data, loopback ports, and the SCU's AE
  # title as a township node (site_tech at tw-hongxing, like wang.tech).
  sed -e "s|yilian-data/|$WORK/hub-data/|g" \
      -e "s|^http_addr = .*|http_addr = \"$HUB_HTTP\"|" \
      -e "s|^listen_addr = .*|listen_addr = \"127.0.0.1:$HUB_DICOM_PORT\"|" \
      "$here/config/demo.toml" >"$WORK/hub.toml"
  cat >>"$WORK/hub.toml" <<EOF

[[dicom.nodes]]
ae_title = "$SCU_AET"
site = "tw-hongxing"
role = "site_tech"
EOF
  TOKEN=$("$YILIAN_BIN" user token wang.tech --config "$WORK/hub.toml")
  "$YILIAN_BIN" serve --config "$WORK/hub.toml" >"$WORK/hub.log" 2>&1 &
  HUB_PID=$!
  # Orthanc through the kit (its config: SQLite index and storage under $WORK/orthanc).
  WORK="$WORK/orthanc" PORT=$ORTHANC_PORT CALLED_AET=ORTHANC ORTHANC_HTTP=$ORTHANC_HTTP \
    "$BENCH_KIT/orthanc_baseline.sh" start-orthanc >"$WORK/orthanc-start.log" 2>&1
  ORTHANC_PID=$(cat "$WORK/orthanc/orthanc.pid")
  trap 'kill '"$HUB_PID"' '"$ORTHANC_PID"' 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do curl -sf "http://$HUB_HTTP/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$HUB_HTTP/healthz" >/dev/null || { cat "$WORK/hub.log" >&2; exit 1; }

  local hub_dimse=no
  if /usr/bin/echoscu -aet "$SCU_AET" -aec YILIAN 127.0.0.1 "$HUB_DICOM_PORT" >/dev/null 2>&1; then
    hub_dimse=yes
  fi
  {
    echo "# $(date -Iseconds) $(uname -sr), $(nproc) cores, $(free -g | awk '/^Mem/{print $2}') GiB"
    echo "# yilian $(git -C "$here" rev-parse --short HEAD) (release), $(head -n1 "$WORK/orthanc-start.log"), $(/usr/bin/storescu --version 2>&1 | head -n1)"
    echo "# hub C-STORE listener: $hub_dimse; STOW batch $STOW_BATCH; files from make_instances.py (CT 512x512x16)"
    printf 'label\tserver\tpath\tclients\tn\tbytes\tseconds\tinst_per_s\tmb_per_s\tpeak_rss_kb\tstored\trc\n'
  } | tee -a "$RESULTS" >&2

  local servers_cstore="orthanc"
  [ "$hub_dimse" = yes ] && servers_cstore="hub orthanc"
  for run in $(seq 1 "$RUNS"); do
    for c in $CLIENTS; do
      for server in $servers_cstore; do measure "$server" cstore "$c" "$N" throughput; done
      for server in hub orthanc; do measure "$server" stow "$c" "$N" throughput; done
    done
  done
  for size in "$SMALL" $((SMALL * 4)); do
    for server in $servers_cstore; do measure "$server" cstore 1 "$size" "study-$size"; done
    for server in hub orthanc; do measure "$server" stow 1 "$size" "study-$size"; done
  done
  rm -rf "$WORK/data"
  summary
  log "done; results in $RESULTS"
}

# Markdown table of this run's medians (the lines after the last header in $RESULTS).
summary() {
  awk '/^label\t/{buf=""} !/^#/{buf=buf $0 "\n"} END{printf "%s", buf}' "$RESULTS" |
    "$BENCH_VENV/bin/python" -c '
import csv, statistics, sys
rows = [r for r in csv.DictReader(sys.stdin, delimiter="\t")]
med = lambda xs: statistics.median(float(x) for x in xs)
groups = {}
for r in rows:
    groups.setdefault((r["label"], r["path"], r["clients"]), {}).setdefault(r["server"], []).append(r)
print("| measurement | path | clients | hub inst/s (MB/s) | Orthanc inst/s (MB/s) | hub / Orthanc | peak RSS hub / Orthanc |")
print("|---|---|---|---|---|---|---|")
for (label, path, c), by in groups.items():
    cell = lambda rs: "%.1f (%.1f)" % (med(r["inst_per_s"] for r in rs), med(r["mb_per_s"] for r in rs)) if rs else "n/a"
    rss = lambda rs: "%.0f MB" % (max(int(r["peak_rss_kb"]) for r in rs) / 1024) if rs else "n/a"
    h, o = by.get("hub", []), by.get("orthanc", [])
    ratio = "%.2f" % (med(r["inst_per_s"] for r in h) / med(r["inst_per_s"] for r in o)) if h and o else "n/a"
    runs = len(h or o)
    plural = "runs" if runs > 1 else "run"
    print(f"| {label} ({runs} {plural}) | {path} | {c} | {cell(h)} | {cell(o)} | {ratio} | {rss(h)} / {rss(o)} |")
'
}

if [ "${1:-}" = "--inner" ]; then inner; else outer "$@"; fi
