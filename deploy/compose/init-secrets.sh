#!/bin/sh
# Makes the secrets deploy/compose.yaml reads, once: random passwords and the patient-key secret, in
# deploy/compose/secrets/ (a folder only you can open; .dockerignore and .gitignore leave it out).
# Existing files are kept: the patient-key secret must never change once patients are linked with it,
# and the passwords are already in the PostgreSQL and MinIO volumes. Back this folder up (docs/operations.md).
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
rand() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
new() { # new NAME CONTENT: write once, readable inside the containers (the folder guards it here)
  if [ -e "$dir/$1" ]; then echo "kept    $dir/$1"; return; fi
  printf '%s\n' "$2" > "$dir/$1"
  chmod 0644 "$dir/$1"
  echo "created $dir/$1"
}
pg="$(rand)"
minio="$(rand)"
new pg-password "$pg"
new hub.env "YILIAN_DATABASE_URL=postgres://yilian:$(cat "$dir/pg-password")@postgres:5432/yilian"
new minio.env "MINIO_ROOT_USER=yilian-root
MINIO_ROOT_PASSWORD=$minio"
new s3-secret "$(rand)"
new patient-key-secret "$(rand)"
