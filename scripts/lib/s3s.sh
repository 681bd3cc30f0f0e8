# Sourced by scripts/test and benches/replica_load.sh: starts the S3-compatible test server (s3s-fs,
# built by scripts/deps) on 127.0.0.1 with a bucket and fresh credentials.
#
#   start_s3s DIR BUCKET   -> on success sets S3_PID, S3_ENDPOINT, S3_KEY, S3_SECRET and returns 0;
#                             the server's log is DIR/server.log, its data DIR/data.
#   stop_s3s               -> stops it (no-op when none was started).
S3_PID=""
s3s_bin() { echo "${YILIAN_TOOLS:-/var/tmp/yilian-tools}/s3s-fs-0.14.1/bin/s3s-fs"; }

start_s3s() {
  local dir="$1" bucket="$2" s3s port key secret code
  s3s=$(s3s_bin)
  [ -x "$s3s" ] && command -v curl >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 || return 1
  mkdir -p "$dir/data"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  key="yilian-test"
  secret=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  "$s3s" --host 127.0.0.1 --port "$port" --access-key "$key" --secret-key "$secret" "$dir/data" \
    >"$dir/server.log" 2>&1 &
  S3_PID=$!
  S3_ENDPOINT="http://127.0.0.1:$port" S3_KEY="$key" S3_SECRET="$secret"
  # The bucket, created through the S3 API (signed; an empty body's SHA-256 in x-amz-content-sha256).
  local empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  for _ in $(seq 1 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      --user "$key:$secret" -H "x-amz-content-sha256: $empty_sha" -X PUT "$S3_ENDPOINT/$bucket" || true)
    if [ "$code" = 200 ]; then return 0; fi
    sleep 0.2
  done
  return 1
}

stop_s3s() {
  if [ -n "$S3_PID" ]; then
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=""
  fi
}
