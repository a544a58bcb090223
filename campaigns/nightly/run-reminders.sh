#!/bin/sh
# Runs (or resumes) the reminders for the next appointment day: tomorrow's list in the evening, today's in the
# morning, so the 09:05 run finishes exactly the list the 17:05 run started. Exit codes are ivr-campaign's.
set -eu
if [ "$(date +%H)" -lt 12 ]; then day=$(date +%F); else day=$(date -d tomorrow +%F); fi
# cron's PATH is short (/usr/bin:/bin): name the binary, or set IVR_CAMPAIGN to where `cargo install` put it.
bin=${IVR_CAMPAIGN:-/usr/local/bin/ivr-campaign}
exec "$bin" --log-format json run /etc/ivr-campaign/reminders.toml \
    --input "/srv/ivr/lists/reminders-$day.csv" \
    --output "/srv/ivr/results/reminders-$day.csv" \
    --summary-json "/srv/ivr/results/reminders-$day.summary.json" \
    --metrics-file /var/lib/node_exporter/textfile_collector/reminders.prom
