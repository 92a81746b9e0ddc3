#!/usr/bin/env bash
# Creates the Pub/Sub topics and subscriptions and the Bigtable instance and
# tables of fraudscore in a real Google Cloud project. Idempotent.
#
#   PROJECT=my-project ZONE=europe-west1-b deploy/dataflow/create_resources.sh
#
# Resource names come from fraudscore/config.py (the one source of truth), via
# the same create_resources() the emulators use; only the Bigtable instance,
# which the emulators don't need, is created here with gcloud.
set -euo pipefail
: "${PROJECT:?set PROJECT to your Google Cloud project id}"
INSTANCE="${INSTANCE:-fraudscore}"
ZONE="${ZONE:-europe-west1-b}"
CLUSTER="${CLUSTER:-${INSTANCE}-c1}"
NODES="${NODES:-1}"
PYTHON="${PYTHON:-python}"

# The official clients must talk to Google Cloud, not to an emulator.
unset PUBSUB_EMULATOR_HOST BIGTABLE_EMULATOR_HOST

if ! gcloud bigtable instances describe "$INSTANCE" --project "$PROJECT" >/dev/null 2>&1; then
  gcloud bigtable instances create "$INSTANCE" --project "$PROJECT" \
    --display-name "fraudscore cases" \
    --cluster-config "id=$CLUSTER,zone=$ZONE,nodes=$NODES"
fi

FRAUDSCORE_PROJECT="$PROJECT" FRAUDSCORE_BIGTABLE_INSTANCE="$INSTANCE" "$PYTHON" - <<'PY'
from fraudscore.config import Resources
from fraudscore.resources import create_resources, describe_resources

resources = Resources.from_env()
report = create_resources(resources)
for path in report.created:
    print("created ", path)
for path in report.existing:
    print("exists  ", path)
for path in report.updated:
    print("updated ", path)
print("\n".join(describe_resources(resources)))
PY
