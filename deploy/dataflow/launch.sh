#!/usr/bin/env bash
# Launches the fraudscore stream job on Dataflow (streaming, autoscaling).
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-bucket \
#   IMAGE=europe-west1-docker.pkg.dev/my-project/fraudscore/stream-worker:0.1.0 \
#   deploy/dataflow/launch.sh
#
# Prerequisites (see README.md): the resources (create_resources.sh), the
# model under gs://$BUCKET/models/creditcard/<version>/, and the worker image
# built from deploy/dataflow/Dockerfile and pushed to $IMAGE.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}" "${IMAGE:?set IMAGE}"
INSTANCE="${INSTANCE:-fraudscore}"
MODEL_BASE="${MODEL_BASE:-gs://$BUCKET/models/creditcard}"
JOB_NAME="${JOB_NAME:-fraudscore-stream-$(date -u +%Y%m%d-%H%M%S)}"
MAX_WORKERS="${MAX_WORKERS:-5}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-2}"

unset PUBSUB_EMULATOR_HOST BIGTABLE_EMULATOR_HOST

# --metrics-port 0: Dataflow reports the job's Beam metrics (namespace
# "fraudscore") in Cloud Monitoring; there is no /metrics to scrape there.
# --id-label: Dataflow de-duplicates redelivered messages on this attribute.
exec fraudscore stream \
  --model-base "$MODEL_BASE" \
  --project "$PROJECT" \
  --bigtable-instance "$INSTANCE" \
  --id-label transaction_id \
  --metrics-port 0 \
  --runner DataflowRunner \
  --region "$REGION" \
  --temp_location "gs://$BUCKET/dataflow/tmp" \
  --staging_location "gs://$BUCKET/dataflow/staging" \
  --job_name "$JOB_NAME" \
  --sdk_container_image "$IMAGE" \
  --max_num_workers "$MAX_WORKERS" \
  --machine_type "$MACHINE_TYPE" \
  --beam-arg=--enable_streaming_engine \
  "$@"
