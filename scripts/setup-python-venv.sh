#!/usr/bin/env bash
# Creates .venv with exchangelib, the real EWS client the simulator is tested against,
# and aiosmtpd, the SMTP server the SMTP notification tests send to.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import exchangelib, aiosmtpd, sys; sys.exit(exchangelib.__version__ != "5.6.0" or aiosmtpd.__version__ != "1.4.6")' 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check exchangelib==5.6.0 aiosmtpd==1.4.6
